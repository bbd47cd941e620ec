"""Study (not adopted): a motion-adaptive zero-velocity gate for the pose LSTM, fitted on a separate held-out part.

    structvid train poses --config configs/demo-poses.yaml --out runs/poses-gate-s2 train.seed=2 data.val_fraction=0.2
    python scripts/pose_gate_study.py gate runs/poses-gate-s2        # rules on seed 2's part minus seed 0's
    python scripts/pose_gate_study.py p0 RULE                         # one chosen rule on the reported part
"""
import json, sys
import numpy as np, torch
from structvid.data.penn_action import PennActionDataset
from structvid.data.pose_windows import select_actions, split_sequences
from structvid.metrics.pose import evaluate_pose_protocol
from structvid.models.saving import load_pretrained, find_checkpoint
from structvid.models.pose_lstm import pose_lstm_predictor

ROOT = "../shared/data/penn_action"
ds = PennActionDataset(ROOT, split="train")
names = select_actions(ds, None)
_, p0 = split_sequences(names, 0.1, 0)          # the reported part (bundled model's held-out)
_, p2 = split_sequences(names, 0.2, 2)          # the gate model's held-out part
gate_names = sorted(set(p2) - set(p0))

def raw_predictor(run):
    m = load_pretrained(find_checkpoint(run), "pose_lstm").eval()
    m.config.zero_velocity_blend = 0.0  # raw LSTM; blends applied below
    return m, pose_lstm_predictor(m, "cpu")

def features(obs):
    """(N, T, J, 3) observed pixels -> dict of (N,) features, scale-free (÷ box diagonal of the last pose)."""
    xy, vis = obs[..., :2], obs[..., 2] > 0
    x1, y1 = np.nanmin(np.where(vis[..., None], xy, np.nan), axis=(1, 2)).T
    x2, y2 = np.nanmax(np.where(vis[..., None], xy, np.nan), axis=(1, 2)).T
    diag = np.hypot(x2 - x1, y2 - y1) + 1e-6
    v = np.linalg.norm(np.diff(xy, axis=1), axis=-1).mean(axis=(1, 2)) / diag  # mean speed
    disp = np.linalg.norm(xy[:, -1] - xy[:, 0], axis=-1).mean(axis=1) / diag  # net displacement over the window
    return {"speed": v, "net": disp, "ratio": disp / (v * (obs.shape[1] - 1) + 1e-6)}  # ratio ~0: oscillating

def gated(pred_raw, feats, rule):
    def predict(observed, horizon):
        y = pred_raw(observed, horizon)
        last = observed[:, -1:, :, :2]
        f = features(observed)
        xy, vis = observed[..., :2], observed[..., 2] > 0
        x1, y1 = np.nanmin(np.where(vis[..., None], xy, np.nan), axis=(1, 2)).T
        x2, y2 = np.nanmax(np.where(vis[..., None], xy, np.nan), axis=(1, 2)).T
        diag = np.hypot(x2 - x1, y2 - y1) + 1e-6
        f["pratio"] = np.linalg.norm(y[:, -1] - last[:, 0], axis=-1).mean(1) / diag / (f["speed"] + 1e-6)
        w = rule(f)[:, None, None, None]
        return last + (1 - w) * (y - last)
    return predict

def run(run_dir, seq_names, rules):
    _, raw = raw_predictor(run_dir)
    seqs = [ds.label(n) for n in seq_names]
    preds = {k: gated(raw, None, r) for k, r in rules.items()}
    return evaluate_pose_protocol(seqs, preds)

if __name__ == "__main__":
    which = sys.argv[1]
    rules = {"const0.1": lambda f: np.full(len(f["speed"]), 0.1)}
    for thr in (8, 10, 12, 14, 16):
        for hi in (0.5, 0.75, 1.0):
            rules[f"pratio<{thr}:{hi}"] = (lambda t, h: (lambda f: np.where(f["pratio"] < t, h, 0.1)))(thr, hi)
    if which == "gate":
        res = run(sys.argv[2] if len(sys.argv) > 2 else "runs/poses-gate-s2", gate_names, rules)
    else:
        res = run("src/structvid/assets/demo", p0, {k: rules[k] for k in sys.argv[2:]} or rules)
    h = res["horizons"].index(32)
    zv = res["methods"]["zero_velocity"]
    acts = sorted(zv["per_action"])
    print("n", res["num_sequences"], "actions", acts)
    print(f"{'method':18s} all   " + " ".join(a[:8] for a in acts))
    for k, m in res["methods"].items():
        if k == "constant_velocity":
            continue
        pa = m["per_action"]
        worse = [a for a in acts if pa[a][h] is not None and pa[a][h] > zv["per_action"][a][h]]
        print(f"{k:18s} {m['overall'][h]:.4f} " + " ".join(f"{pa[a][h]:.4f}" if pa[a][h] is not None else "  -   " for a in acts), "worse:", worse)
