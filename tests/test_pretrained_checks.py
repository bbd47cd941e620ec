"""load_pretrained refuses a config the weights do not fit before allocating, and non-finite weights."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from structvid.config import ForecasterConfig
from structvid.errors import UserError
from structvid.models import saving
from structvid.models.forecaster import Forecaster
from structvid.models.saving import load_pretrained, save_pretrained

CFG = ForecasterConfig(resolution=16, base_width=8, max_width=16, dense_growth=4)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    save_pretrained(Forecaster(CFG), tmp_path, "generator")
    return tmp_path


def edit_config(folder: Path, **changes) -> None:
    path = folder / "generator.json"
    meta = json.loads(path.read_text())
    meta["config"].update(changes)
    path.write_text(json.dumps(meta))


class MetaOnly(Forecaster):
    """Fails if built anywhere but on the meta device (where no storage is allocated)."""

    def __init__(self, cfg: ForecasterConfig) -> None:
        if torch.get_default_device().type != "meta":
            raise AssertionError("built for real before the shapes were checked")
        super().__init__(cfg)


def test_absurd_widths_are_refused_from_the_header_before_allocating(saved: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    edit_config(saved, base_width=10**6, max_width=10**6)  # asks for terabytes of weights
    monkeypatch.setitem(saving._REGISTRY, "Forecaster", (MetaOnly, ForecasterConfig))
    monkeypatch.setattr(saving, "load_file", lambda *a, **k: pytest.fail("tensor data read before the check"))
    with pytest.raises(UserError, match="generator.json") as info:
        load_pretrained(saved, "generator")
    assert "shape mismatch" in str(info.value) and "\n" not in str(info.value)


def test_negative_width_is_one_error_naming_the_json(saved: Path) -> None:
    edit_config(saved, base_width=-3)
    with pytest.raises(UserError) as info:
        load_pretrained(saved, "generator")
    assert info.value.path == str(saved / "generator.json") and "base_width" in info.value.problem


def test_non_finite_weights_are_refused_naming_the_tensor(saved: Path) -> None:
    weights = saved / "generator.safetensors"
    state = load_file(str(weights))
    name = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)[3]
    state[name].view(-1)[: state[name].numel() // 2] = float("nan")  # partly overwritten
    save_file(state, str(weights))
    with pytest.raises(UserError, match="non-finite") as info:
        load_pretrained(saved, "generator")
    assert name in info.value.problem and info.value.path == str(weights)


def test_good_weights_still_load(saved: Path) -> None:
    model = load_pretrained(saved, "generator")
    assert isinstance(model, Forecaster) and not model.training
    assert next(model.parameters()).device.type == "cpu"
