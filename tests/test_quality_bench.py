"""`structvid bench quality` (issue 9 §6, Table 8): metrics, baselines and the report of the tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from structvid.metrics.pixel import PSNR_CAP
from structvid.quality_bench import (
    copy_last, farneback_extrapolate, held_out_videos, ordering_checks, score_clip, temporal_error,
)


def _texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture (uint8): blurred noise, so optical flow has gradients everywhere."""
    noise = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3.0) * 3 - 255, 0, 255).astype(np.uint8)


def _shifted(image: np.ndarray, dx: float, dy: float, out: int = 64) -> np.ndarray:
    """The centre out x out window of `image` moved by (dx, dy) pixels (content moves right / down)."""
    m = np.float32([[1, 0, dx - (image.shape[1] - out) / 2], [0, 1, dy - (image.shape[0] - out) / 2]])
    return cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_temporal_error_of_copy_is_the_real_videos_change_hand_checked():
    # real video: a grey level per frame 0, 51, 153, 102 -> [0, 1] values 0, 0.2, 0.6, 0.4
    target = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 51, 153, 102)])
    observed = np.full((2, 8, 8, 3), 200, np.uint8)
    pred = copy_last(observed, 4)
    assert pred.shape == target.shape and (pred == 200).all()
    # copy does not move: |0 - (V_{t+1} - V_t)| = 0.2, 0.4, 0.2
    np.testing.assert_allclose(temporal_error(pred, target), [0.2, 0.4, 0.2], atol=1e-12)
    assert score_clip(pred, target)["temporal"].mean() == pytest.approx(0.8 / 3)
    # a prediction that changes exactly as the real video does (offset by a constant) has no temporal error
    np.testing.assert_allclose(temporal_error(target // 2 + 20, target // 2), 0.0, atol=1e-12)


def test_perfect_prediction_scores_ideal():
    video = np.stack([_shifted(_texture(), t, 0) for t in range(5)])
    s = score_clip(video, video)
    np.testing.assert_array_equal(s["mse"], 0.0)
    np.testing.assert_array_equal(s["psnr"], PSNR_CAP)
    np.testing.assert_allclose(s["ssim"], 1.0)
    np.testing.assert_array_equal(s["temporal"], 0.0)
    assert len(s["mse"]) == 5 and len(s["temporal"]) == 4


def test_farneback_extrapolates_a_constant_translation_better_than_copy():
    tex = _texture()
    video = np.stack([_shifted(tex, 1.5 * t, -1.0 * t) for t in range(5)])  # 1.5 px right, 1 px up per frame
    pred = farneback_extrapolate(video[:2], 3)
    copy = copy_last(video[:2], 3)
    assert pred.shape == (3, 64, 64, 3) and pred.dtype == np.uint8
    flow, still = score_clip(pred, video[2:]), score_clip(copy, video[2:])
    inner = (slice(None), slice(12, -12), slice(12, -12))  # away from the borders the warp has to invent
    err_flow = np.abs(pred[inner].astype(float) - video[2:][inner]).mean()
    err_copy = np.abs(copy[inner].astype(float) - video[2:][inner]).mean()
    assert err_flow < 0.25 * err_copy
    assert (flow["mse"] < still["mse"]).all() and flow["temporal"].mean() < still["temporal"].mean()


def test_held_out_videos_deals_actions_round_robin_and_skips_short_ones():
    lengths = {"01": 40, "02": 40, "03": 10, "04": 40, "05": 40, "06": 40}
    acts = {"01": "golf", "02": "golf", "03": "bowl", "04": "bowl", "05": "bowl", "06": "golf"}
    sampler = SimpleNamespace(names=list(lengths), action=acts.get,
                              video=lambda n: SimpleNamespace(frames=np.zeros((lengths[n], 1))))
    assert held_out_videos(sampler, 32, None) == ["04", "01", "05", "02", "06"]  # bowl, golf, ...; 03 too short
    assert held_out_videos(sampler, 32, 2) == ["04", "01"]
    assert held_out_videos(sampler, 39, None) == []


def test_ordering_checks_report_direction_and_per_video_wins():
    methods = {"mask": {"mse": 0.02, "psnr": 20.0, "ssim": 0.8, "temporal": 0.01,
                        "per_video": {"mse": [0.01, 0.03], "psnr": [22, 18], "ssim": [0.9, 0.7], "temporal": [0.01] * 2}},
               "mask_dense": {"mse": 0.01, "psnr": 19.0, "ssim": 0.8, "temporal": 0.02,
                              "per_video": {"mse": [0.02, 0.0], "psnr": [17, 21], "ssim": [0.8, 0.8],
                                            "temporal": [0.02] * 2}}}
    rows = {r["metric"]: r for r in ordering_checks(methods)}
    assert set(rows) == {"mse", "psnr", "ssim", "temporal"}  # only the pair both methods exist for
    assert rows["mse"]["holds"] and rows["mse"]["difference"] == pytest.approx(-0.01) and rows["mse"]["wins"] == 0.5
    assert not rows["psnr"]["holds"] and rows["psnr"]["wins"] == 0.5
    assert not rows["ssim"]["holds"] and rows["ssim"]["wins"] == 0.5  # a tie is no win
    assert not rows["temporal"]["holds"] and rows["temporal"]["wins"] == 0.0


def test_tiny_bench_writes_the_report(shared_data: Path, tmp_path: Path, capsys):
    from structvid.cli import main
    from structvid.config import DataConfig
    from structvid.data.clips import ClipSampler

    work, out = tmp_path / "work", tmp_path / "report"
    assert main(["bench", "quality", "--tiny", "--penn-labels", str(shared_data / "penn_action"), "--work", str(work),
                 "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = ["none", "difference", "mask", "mask_dense", "mask_dense_gr", "copy", "farneback"]
    assert list(line)[1:-1] == keys
    assert sorted(p.name for p in out.iterdir()) == ["psnr_per_frame.png", "quality.json", "quality.md",
                                                     "temporal_error.png"]
    r = json.loads((out / "quality.json").read_text())
    frames = r["protocol"]["frames"]
    assert r["protocol"]["predicted_frames"] == [2, frames + 1]
    assert list(r["methods"]) == keys
    for k, m in r["methods"].items():
        assert len(m["per_frame"]["psnr"]) == frames and len(m["per_frame"]["temporal"]) == frames - 1
        assert 0 <= m["mse"] and 0 < m["psnr"] <= PSNR_CAP and m["ssim"] <= 1 and m["temporal"] >= 0
        assert line[k]["mse"] == pytest.approx(m["mse"], abs=1e-6)
    for k in keys[:5]:  # every network trained the steps asked for, on the training render
        assert r["training"][k]["steps"] == (r["options"]["refine_steps"] if k == "mask_dense_gr" else r["options"]["steps"])
    assert "model.residual=none" in r["training"]["none"]["overrides"]
    assert "model.dense=false" in r["training"]["mask"]["overrides"]
    assert any(o.startswith("data.forecaster=") and o.endswith("mask_dense") for o in r["training"]["mask_dense_gr"]["overrides"])
    # held out: other looks (seed) and motions of part eval only, none of parts gm / gr
    assert r["options"]["test_seed"] != r["options"]["train_seed"]
    parts = {p: set(ClipSampler(DataConfig(root=r["data"]["test_render"], image_size=16, part=p)).names)
             for p in ("gm", "gr", "eval")}
    evaluated = set(r["data"]["evaluated"])
    assert evaluated and evaluated <= parts["eval"] and not evaluated & (parts["gm"] | parts["gr"])
    # copy's temporal error is the mean absolute change of the real predicted frames (recomputed from the data)
    sampler = ClipSampler(DataConfig(root=r["data"]["test_render"], image_size=16, part="eval"))
    change = np.mean([np.abs(np.diff(sampler.video(n).frames[2 : 2 + frames].astype(float) / 255, axis=0)).mean()
                      for n in r["data"]["evaluated"]])
    assert r["methods"]["copy"]["temporal"] == pytest.approx(change, rel=1e-9)
    assert {row["worse"] + ">" + row["better"] for row in r["ordering"]} == {
        "mask>mask_dense", "mask_dense>mask_dense_gr", "none>mask_dense", "difference>mask_dense"}
    md = (out / "quality.md").read_text()
    assert r["command"].startswith("structvid bench quality ") and " --tiny" in r["command"]
    assert f"`{r['command']}`" in md and "(v) (iv) + G_R" in md and "Farnebäck" in md
