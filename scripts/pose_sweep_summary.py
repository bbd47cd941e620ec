"""Summarise a pose sweep folder (scripts/pose_sweep.sh): SWEEP/summary.json and one line per run.

    python scripts/pose_sweep_summary.py runs/pose-sweep

Each run's held-out figures come from RUN/eval/poses.json (`structvid evaluate poses --heldout`). Runs named
NAME_s<seed> (SEEDS=...) are also pooled per NAME: the held-out errors of the seeds averaged, weighted by
each held-out part's number of evaluated sequences (the parts of different seeds may overlap).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarise(root: Path) -> dict:
    runs = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.yaml").exists()):
        metrics = run / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
        ev = run / "eval" / "poses.json"
        res = json.loads(ev.read_text()) if ev.exists() else None
        runs[run.name] = {
            "steps": rows[-1]["step"] if rows else 0,
            "val_curve": [r for r in rows if any(k.startswith("val/") for k in r)],
            "heldout": {m: v["overall"] for m, v in res["methods"].items()} if res else None,
            "num_sequences": res["num_sequences"] if res else 0,
            "per_action_h32": {m: {a: e[-1] for a, e in v["per_action"].items()} for m, v in res["methods"].items()}
            if res else None,
        }
    groups: dict[str, list[dict]] = {}
    for name, r in runs.items():
        base, _, seed = name.rpartition("_s")
        if base and seed.isdigit() and r["heldout"]:
            groups.setdefault(base, []).append(r)
    pooled = {}
    for base, rs in groups.items():
        n = sum(r["num_sequences"] for r in rs)
        pooled[base] = {"seeds": len(rs), "num_sequences": n}
        for m in ("lstm", "zero_velocity"):
            pooled[base][m] = [sum(r["heldout"][m][i] * r["num_sequences"] for r in rs) / n
                               for i in range(len(rs[0]["heldout"][m]))]
    return {"runs": runs, "pooled_over_seeds": pooled}


def line(name: str, label: str, h: dict | None) -> str:
    if not h:
        return f"{name:28s} {label}  (not evaluated)"
    below = [round(1 - a / b, 3) for a, b in zip(h["lstm"], h["zero_velocity"])]
    return (f"{name:28s} {label}  lstm {[round(x, 4) for x in h['lstm']]}  zv {[round(x, 4) for x in h['zero_velocity']]}"
            f"  below zv {below}")


def main() -> None:
    root = Path(sys.argv[1])
    summary = summarise(root)
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    for name, r in summary["runs"].items():
        print(line(name, f"steps {r['steps']:6d}", r["heldout"]))
    for name, r in summary["pooled_over_seeds"].items():
        print(line(name, f"{r['seeds']} seeds, {r['num_sequences']} seqs", r))


if __name__ == "__main__":
    main()
