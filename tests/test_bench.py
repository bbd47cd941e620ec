"""`structvid bench refine` at tiny sizes: the report's keys and that its figures are positive (no timings are
asserted: they depend on the machine)."""

import json

import pytest

from structvid import bench
from structvid.cli import DEMO_DIR, main


@pytest.fixture(autouse=True)
def small_gemm(monkeypatch):
    monkeypatch.setattr(bench, "GEMM_SIZE", 256)  # the reference matmul at 2048 takes seconds on a shared CPU

TINY = dict(width=4, resolution=16, clip_length=4, batch=2, steps=1, device="cpu")
FIGURES = ["gr_gflop_per_clip", "train_gflop_per_iteration", "train_s_per_iteration", "train_clips_per_s",
           "train_gflop_per_s", "infer_frames_per_s", "infer_gflop_per_s", "gemm_gflop_per_s",
           "train_fraction_of_gemm", "peak_memory_gib", "params_gr_m", "params_dv_m"]


def test_bench_refine_reports_positive_figures_for_one_training_iteration():
    r = bench.bench_refine(**TINY, precision="fp32")
    assert r["bench"] == "refine" and r["precision"] == "fp32" and r["clip_length"] == 4
    for key in FIGURES:
        assert r[key] > 0, key
    assert "gemm_fp32_gflop_per_s" not in r and "e2e_s" not in r  # fp32 is the reference; no pipeline given
    # one iteration = critics update (D_V with its double backward, D_I) + G_R update: far more than G_R's forward
    assert r["train_gflop_per_iteration"] > 3 * r["batch"] * r["gr_gflop_per_clip"]


def test_bench_refine_bf16_has_a_bf16_gemm_and_times_both_stages(monkeypatch):
    gemms = []
    real = bench.gemm_gflops
    monkeypatch.setattr(bench, "gemm_gflops", lambda *a, **kw: gemms.append(kw.get("precision")) or real(*a, **kw))
    r = bench.bench_refine(**TINY, precision="bf16", pipeline=DEMO_DIR, frames=8)
    assert {"bf16", "fp32"} <= set(gemms)  # the reference in the bench's precision, fp32 beside it
    assert r["gemm_gflop_per_s"] > 0 and r["gemm_fp32_gflop_per_s"] > 0
    assert r["e2e_frames"] == 8 and r["e2e_s"] > 0 and r["e2e_frames_per_s"] > 0
    assert r["e2e_refiner"] == "the pipeline's"  # the bundled demo carries its trained G_R
    assert 30 < r["e2e_psnr_vs_fp32_db"] <= 100  # bf16 frames close to fp32's, not identical by construction


def test_bench_refine_cli_prints_one_json_line(capsys):
    args = ["bench", "refine", "--width", "4", "--resolution", "16", "--clip-length", "4", "--batch", "1",
            "--steps", "1", "--device", "cpu", "--no-end-to-end"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["bench"] == "refine" and report["batch"] == 1 and report["train_clips_per_s"] > 0
    assert main(args[:5] + ["--clip-length", "3"]) == 2
    assert "--clip-length" in capsys.readouterr().err


def test_two_stages_on_a_run_without_example_or_refiner(tmp_path):
    import torch

    from structvid.config import ForecasterConfig
    from structvid.models.forecaster import Forecaster
    from structvid.models.saving import save_pretrained

    torch.manual_seed(0)
    save_pretrained(Forecaster(ForecasterConfig(resolution=32, base_width=4, max_width=16, dense_growth=4)),
                    tmp_path, "generator")
    r = bench.bench_two_stages(tmp_path, 5, torch.device("cpu"), "fp32", reps=1)
    assert r["e2e_frames"] == 5 and r["e2e_s"] > 0 and r["e2e_refiner"].startswith("random init")
    assert "e2e_psnr_vs_fp32_db" not in r
