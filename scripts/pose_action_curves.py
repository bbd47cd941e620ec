"""Per-action error curves (every step 1..32) of a pose LSTM against zero velocity on a held-out part.

    python scripts/pose_action_curves.py src/structvid/assets/demo docs/img/pose_per_action.png [--val-fraction 0.1 --seed 0]

The part is the one `structvid evaluate poses --heldout` scores for a model trained with that seed and
val_fraction (the protocol's first window of each sequence of 42+ frames). Shows why jump rope's h=32 figure
is a lottery on its few sequences: zero velocity's error there rises and falls with the skipping cycle.
"""
import argparse

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from structvid.data.penn_action import PennActionDataset
from structvid.data.pose_windows import select_actions, split_sequences
from structvid.metrics.pose import evaluate_pose_protocol
from structvid.models.pose_lstm import pose_lstm_predictor
from structvid.models.saving import find_checkpoint, load_pretrained

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("out")
ap.add_argument("--root", default="../shared/data/penn_action")
ap.add_argument("--val-fraction", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

ds = PennActionDataset(a.root, split="train")
_, part = split_sequences(select_actions(ds, None), a.val_fraction, a.seed)
model = load_pretrained(find_checkpoint(a.checkpoint), "pose_lstm").eval()
steps = list(range(1, 33))
res = evaluate_pose_protocol([ds.label(n) for n in part], {"lstm": pose_lstm_predictor(model, "cpu")}, horizons=steps)
zv, lstm = res["methods"]["zero_velocity"]["per_action"], res["methods"]["lstm"]["per_action"]
counts = {}
for n in part:
    s = ds.label(n)
    if s.nframes >= 42:
        counts[s.action] = counts.get(s.action, 0) + 1
acts = sorted(zv)
fig = Figure(figsize=(12, 6.2), dpi=100)
FigureCanvasAgg(fig)
axes = fig.subplots(2, 4).ravel()
for ax, act in zip(axes, acts + ["all"]):
    z = res["methods"]["zero_velocity"]["curve"] if act == "all" else zv[act]
    y = res["methods"]["lstm"]["curve"] if act == "all" else lstm[act]
    ax.plot(steps, z, label="zero velocity", color="0.45")
    ax.plot(steps, y, label="LSTM", color="C0")
    n = res["num_sequences"] if act == "all" else counts.get(act, 0)
    ax.set_title(f"{act.replace('_', ' ')} ({n})", fontsize=10)
    ax.axvline(32, color="0.85", lw=0.8)
    ax.tick_params(labelsize=8)
axes[0].legend(fontsize=8)
for ax in axes[4:]:
    ax.set_xlabel("forecast step", fontsize=9)
fig.suptitle(f"{a.checkpoint}: normalised joint error per step, held-out part (seed {a.seed}, "
             f"{a.val_fraction:.0%}, {res['num_sequences']} sequences)", fontsize=10)
fig.tight_layout()
fig.savefig(a.out)
print("h=32 per action (LSTM / zero velocity):",
      ", ".join(f"{act} {lstm[act][-1]:.4f}/{zv[act][-1]:.4f}" for act in acts))
