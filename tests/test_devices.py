import logging
import math

import pytest
import torch

from structvid.errors import UserError
from structvid.devices import pick_device, resolve_precision
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
