"""A run folder guards itself: one training at a time, no silent overwrite, no trace of a failed start.

* `train` into a folder that holds a run (config.yaml, latest.json, checkpoints/ or metrics.jsonl) is
  refused unless `--resume` continues it or `--force` starts it over.
* RUN/train.lock holds {pid, host, started} of the training that owns the folder. It is created with
  O_CREAT | O_EXCL, so a second training into the same folder refuses. A lock of this host whose pid is
  no longer alive is stale (a killed training) and is replaced with a warning; a lock of another host is
  never presumed stale (its pid means nothing here).
* Nothing is written before the start succeeded (config valid, data found, checkpoint restored): then,
  under the lock, `begin` removes what `--force` replaces and cuts metrics.jsonl back to the resumed
  step so no step is logged twice. Only the leftovers of an interrupted save (temp files, a checkpoint
  caught between two renames) are dealt with as soon as the lock is taken, before a resume reads
  latest.json.
* Under torchrun only rank 0 checks, locks and writes; the ranks agree on whether it could start, so a
  refusal ends every rank instead of leaving them waiting for rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import torch

from structvid.errors import UserError
from structvid.io.files import atomic_write_text, output_errors
from structvid.training.distributed import DistInfo, mean_across_ranks

log = logging.getLogger(__name__)

LOCK = "train.lock"
RUN_MARKERS = ("config.yaml", "latest.json", "checkpoints", "metrics.jsonl")  # "this folder holds a run"
RUN_FILES = ("checkpoints", "latest.json", "metrics.jsonl", "tb", "samples", "data.json", "config.yaml")  # --force
# temporary names of io.files.atomic_path / atomic_dir, by folder: what an interrupted save leaves behind
LEFTOVERS = {
    ".": (".latest.*.tmp.json", ".config.*.tmp.yaml", ".data.*.tmp.json", ".metrics.*.tmp.jsonl"),
    "checkpoints": (".step_*.tmp",),
    "samples": (".step_*.tmp.png",),
}


def holds_run(run_dir: Path) -> list[str]:
    """The run files present in `run_dir` (empty: it holds no run)."""
    return [name for name in RUN_MARKERS if (run_dir / name).exists()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    """The lock's owner, or None when the file is not a lock this module wrote (empty, half-written...)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = owner.get("pid") if isinstance(owner, dict) else None
    # a pid <= 0 would make os.kill(pid, 0) ask about a whole process group
    if not (type(pid) is int and 0 < pid < 1 << 31 and isinstance(owner.get("host"), str)):
        return None
    return owner


class RunLock:
    """RUN/train.lock: taken with O_CREAT | O_EXCL, stale locks of dead local processes replaced."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._remove_if_stale()
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(self.text)
            except BaseException:  # a full disk: no empty lock may stay behind to block the next start
                self.path.unlink()
                raise
            self.held = True
            return
        self._refuse(_read_lock(self.path))

    def _refuse(self, owner: dict | None) -> None:
        if owner is None:
            raise UserError("run folder is locked by a training whose lock file cannot be read; if no training "
                            "uses this folder, delete the lock file", self.path)
        where = f"pid {owner['pid']} on host {owner['host']}"
        if "started" in owner:
            where += f" since {owner['started']}"
        if owner["host"] == socket.gethostname():
            hint = f"; if pid {owner['pid']} is not a training (a reused pid), delete {self.path}"
        else:
            hint = f"; a lock of another host is never taken as stale: if that training has ended, delete {self.path}"
        raise UserError(f"another training is using this run folder ({where}){hint}", self.path.parent)

    def _remove_if_stale(self) -> None:
        """Remove the lock when it belongs to a dead process of this host; otherwise refuse, naming its owner."""
        owner = _read_lock(self.path)
        if owner is None:
            if not self.path.exists():  # released meanwhile: try again
                return
            self._refuse(None)
        if owner["host"] != socket.gethostname() or _alive(owner["pid"]):
            self._refuse(owner)
        # Move it aside before deleting, and delete only if it is still the stale one: a training that
        # replaced it meanwhile keeps its lock.
        aside = self.path.with_name(f".{LOCK}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read_lock(aside) == owner:
            aside.unlink()
            log.warning("removed the stale lock of pid %d on %s (no such process): %s", owner["pid"], owner["host"],
                        self.path)
        else:
            try:
                os.link(aside, self.path)  # give it back
            except FileExistsError:  # a third training took the lock meanwhile: it is that one's now
                pass
            finally:
                aside.unlink()
            self._refuse(_read_lock(self.path))

    def release(self) -> None:
        """Remove the lock if it is still ours (not if a user deleted it and another training took it)."""
        if self.held:
            self.held = False
            try:
                if self.path.read_text() == self.text:
                    self.path.unlink()
            except OSError:
                pass


def _cut_metrics(path: Path, step: int) -> None:
    """Drop the metrics.jsonl lines of steps after `step` (and any line cut short by a crash)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if keep != lines:
        atomic_write_text(path, "".join(keep))
        log.info("metrics.jsonl: dropped %d line(s) after step %d", len(lines) - len(keep), step)


def remove_leftovers(run_dir: Path) -> None:
    """Temp files and folders of saves that were interrupted (killed process, full disk)."""
    for sub, patterns in LEFTOVERS.items():
        for pattern in patterns:
            for p in (run_dir / sub).glob(pattern):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    # atomic_dir moves a replaced checkpoint to .step_N.old before renaming the new one into place:
    # killed in between, the .old folder is the only copy, so it is restored rather than deleted.
    for old in (run_dir / "checkpoints").glob(".step_*.old"):
        final = old.with_name(old.name[1:-len(".old")])
        if final.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, final)


class RunFolder:
    """Context for one training's use of a run folder: refuse, lock, and on exit unlock.

    `begin(step)` is called once the start succeeded; before it, a failed start leaves the folder as it was
    (only the lock, and folders this start created, come and go).
    """

    def __init__(self, run_dir: str | Path, info: DistInfo, device: torch.device, resume: bool = False,
                 force: bool = False) -> None:
        if resume and force:
            raise UserError("--resume continues a run and --force starts it over: give one of them")
        self.run_dir, self.info, self.device = Path(run_dir), info, device
        self.resume, self.force = resume, force
        self.lock = RunLock(self.run_dir)
        self.created: list[Path] = []
        self.started = False

    def __enter__(self) -> "RunFolder":
        error = None
        if self.info.is_main:
            try:
                self._claim()
            except UserError as e:
                error = e
        # every rank learns whether rank 0 could start (mean of 1.0 = all ranks fine)
        ok = mean_across_ranks({"ok": 0.0 if error else 1.0}, self.info, self.device)["ok"] == 1.0
        if error is not None:
            self._undo()
            raise error
        if not ok:
            raise UserError("rank 0 could not start the run (see its error)", self.run_dir)
        return self

    def _claim(self) -> None:
        run_dir = self.run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError("--out is a file, not a folder", run_dir)
        found = holds_run(run_dir) if run_dir.is_dir() else []
        if found and not (self.resume or self.force):
            raise UserError(f"already holds a run ({', '.join(found)}): add --resume to continue it, --force to "
                            "start over, or choose another --out", run_dir)
        missing = run_dir
        while not missing.exists():
            self.created.append(missing)
            missing = missing.parent
        with output_errors(run_dir, "creating"):
            run_dir.mkdir(parents=True, exist_ok=True)
        with output_errors(self.lock.path):
            self.lock.acquire()
        # before --resume reads latest.json: a checkpoint caught between atomic_dir's renames is restored
        remove_leftovers(run_dir)

    def begin(self, step: int) -> None:
        """The start succeeded at `step` (0, or the resumed checkpoint's): make the folder this run's (rank 0)."""
        self.started = True
        if not self.info.is_main:
            return
        run_dir = self.run_dir
        if self.force:
            removed = [name for name in RUN_FILES if (run_dir / name).exists()]
            for name in removed:
                p = run_dir / name
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            if removed:
                log.warning("--force: removed the previous run's %s from %s", ", ".join(removed), run_dir)
        _cut_metrics(run_dir / "metrics.jsonl", step)
        for png in (run_dir / "samples").glob("step_*.png"):  # grids of steps the resumed run will redo
            if png.stem[5:].isdigit() and int(png.stem[5:]) > step:
                png.unlink()

    def _undo(self) -> None:
        self.lock.release()
        if not self.started:  # a failed start leaves no folder it created
            for d in self.created:
                try:
                    d.rmdir()
                except OSError:
                    break

    def __exit__(self, *exc) -> None:
        self._undo()
