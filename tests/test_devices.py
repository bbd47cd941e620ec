import logging
import math

import numpy as np
import pytest
import torch

from structvid import devices
from structvid.config import ForecasterConfig, RefinerConfig
from structvid.devices import inference_precision, native_bf16_cpu, pick_device, resolve_precision
from structvid.errors import UserError
from structvid.models.forecaster import Forecaster
from structvid.models.refiner import Refiner
from structvid.pipelines.image_to_video import ImageToVideoPipeline
from structvid.training.tasks import train_forecaster


def test_auto_device_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto").type == expected
    assert pick_device("cpu").type == "cpu"


def test_unavailable_device_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(UserError, match="unknown device"):
        pick_device("tpu9")


def test_fp16_on_cpu_falls_back_to_fp32_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("fp16", torch.device("cpu")) == "fp32"
    assert "falling back to fp32" in caplog.text
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(UserError):
        resolve_precision("fp8", torch.device("cpu"))


def test_bf16_autocast_training_on_cpu_gives_finite_losses(tmp_path, tiny_config):
    result = train_forecaster(tiny_config("train.precision=bf16", "train.steps=2"), tmp_path / "run", progress=False)
    assert result.step == 2
    assert all(math.isfinite(v) for v in result.stats.values())
    assert "generator/rec_l1" in result.stats


# ---------------------------------------------------------------- inference precision (bf16 on native-bf16 CPUs)

CPU = torch.device("cpu")


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512vl\n")
    assert native_bf16_cpu(str(info))
    info2 = tmp_path / "cpuinfo2"
    info2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_tile amx_bf16\n")
    assert native_bf16_cpu(str(info2))
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")  # bf16 only emulated
    assert not native_bf16_cpu(str(plain))
    assert not native_bf16_cpu(str(tmp_path / "missing"))  # not Linux


@pytest.mark.parametrize("native, auto_bf16, expected", [(True, True, "bf16"), (False, True, "fp32"),
                                                          (True, False, "fp32")])
def test_auto_precision_follows_the_capability(monkeypatch, native, auto_bf16, expected):
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: native)
    monkeypatch.setattr(devices, "AUTO_BF16", auto_bf16)
    assert inference_precision("auto", CPU) == expected
    assert inference_precision("fp32", CPU) == "fp32" and inference_precision("bf16", CPU) == "bf16"
    assert inference_precision("auto", torch.device("cuda")) == "fp32"  # "elsewhere": fp32
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: True)
    pipe = ImageToVideoPipeline(_gm(), device="cpu", precision="auto")
    assert pipe.precision == ("bf16" if auto_bf16 else "fp32")
    with pytest.raises(UserError, match="inference precision"):
        inference_precision("fp16", CPU)


S, K = 32, 4


def _gm() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(ForecasterConfig(resolution=S, base_width=4, max_width=16, dense_growth=4))


def _gr() -> Refiner:
    torch.manual_seed(1)
    return Refiner(RefinerConfig(resolution=S, clip_length=K, base_width=4, max_width=16))


def _run(precision: str) -> tuple:
    """Frames of a two-stage pipeline in `precision`, and the dtypes G_M's and G_R's layers computed in."""
    pipe = ImageToVideoPipeline(_gm(), refiner=_gr(), chunk=3, precision=precision)
    dtypes = set()
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
             for net in (pipe.forecaster, pipe.refiner) for m in net.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d))]
    rng = np.random.default_rng(0)
    poses = rng.uniform(8, 40, (8, 13, 3)).astype(np.float32)
    poses[..., 2] = 1
    out = pipe(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), poses)
    for h in hooks:
        h.remove()
    return out, dtypes


def test_pipeline_precision_fp32_is_exact_fp32_and_bf16_is_close():
    fp32, fp32_dtypes = _run("fp32")
    bf16, bf16_dtypes = _run("bf16")
    assert fp32_dtypes == {torch.float32}  # no autocast anywhere
    assert bf16_dtypes == {torch.bfloat16}  # G_M's and G_R's convolutions run in bf16
    for a, b in ((fp32.frames, bf16.frames), (fp32.coarse, bf16.coarse)):
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 0.5 and diff.max() <= 4  # bf16 keeps 8 bits of mantissa: measured 0.05 and 1
    assert not np.array_equal(fp32.frames, bf16.frames)  # bf16 did run
    np.testing.assert_array_equal(fp32.frames, _run("fp32")[0].frames)  # deterministic
