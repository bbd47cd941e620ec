"""Typed experiment configuration: one YAML per experiment, every field overridable as `section.field=value`.

A preset (see `configs/`) holds the sections below; the resolved config is written into each run folder
and checkpoints carry it, so a run can be rebuilt from its folder alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from structvid.errors import UserError

RESIDUAL_MODES = ("mask", "difference", "none")
DATA_PARTS = ("all", "gm", "gr", "eval")  # DataConfig.part: the paper's three-way split (§7.1)
SKIP_CONTENTS = ("image", "image_motion")  # ForecasterConfig.skip_content (models/forecaster.py)
POSE_DATASETS = ("penn_action", "human36m")  # PoseDataConfig.dataset (training/tasks.py pose_sequences)
STRUCTURE_KINDS = ("joints", "face_normals")  # StructureConfig.kind (structure/factory.py)
NORMAL_SPACES = ("camera", "model")  # StructureConfig.normal_space (structure/faces/normals.py)
SHADINGS = ("smooth", "flat")


@dataclass
class StructureConfig:
    """The motion maps M of §4 that condition G_M (Eq. 6) and G_R (Eq. 15), saved with every checkpoint.

    `joints`: one Gaussian heatmap per 2D joint (bodies; `num_joints` channels). `face_normals`: normal maps
    of a 3D morphable model (faces, Eq. 1-2; 3 channels). `structure/factory.py` builds the renderer.
    """

    kind: str = "joints"
    num_joints: int = 13  # joints: 13 Penn Action joints
    sigma: float = 1.5  # joints: heatmap Gaussian std in output pixels
    # face_normals: the 3DMM: "" = the Surrey Face Model (../shared/data/sfm when present, else downloaded to
    # the cache), a folder of SFM files, or a 3DDFA BFM .pkl (structure/faces/morphable.py load_model)
    face_model: str = ""
    normal_space: str = "camera"  # camera (posed mesh) | model (unrotated mesh, the authors' code)
    shading: str = "smooth"  # smooth (interpolated vertex normals) | flat (per triangle)

    @property
    def channels(self) -> int:
        """C of the rendered maps: model.motion_channels must equal it."""
        return self.num_joints if self.kind == "joints" else 3


@dataclass
class ForecasterConfig:
    """G_M, the motion forecasting network (§5.1, Table 1).

    `residual`: "mask" is Eq. 7 (m⊙c + (1−m)⊙I_t), "difference" is Eq. 6 (I_t + Δ), "none" generates the
    frame directly (the paper's ablations). `dense` switches the dense decoder connections (§5.1).
    """

    image_channels: int = 3
    motion_channels: int = 13  # 13 Penn Action joint heatmaps; 3 for face normal maps (§4)
    resolution: int = 64  # 64 or 128; the encoder halves it down to a 4x4 bottleneck (Table 1: E4 4x4)
    base_width: int = 64  # Table 1: E0/E1 have 64 filters, doubling to 512 at E4
    max_width: int = 512
    residual: str = "mask"
    dense: bool = True
    # §5.1 is silent on how wide the dense inputs are. Concatenating every earlier block's full output
    # (the authors' code) costs ~56 GFLOP/frame at 64x64; we project each earlier block to a fixed
    # `dense_growth` channels (DenseNet's growth rate) before upsampling and concatenating it.
    dense_growth: int = 32
    skip: bool = True  # U-Net skips f_I -> f_D (§5.1)
    # What the skips carry: "image" f_I(I_t) only (§5.1: skips "between f_I and f_D"); "image_motion" also
    # f_M(M_{t+k}) and f_M(M_t) of the same level, as the authors' released code does (docs/design.md)
    skip_content: str = "image"


@dataclass
class CriticConfig:
    """D_I, the conditional image critic (§5.2, Eq. 12-14): E* design of Table 1, no batch norm."""

    image_channels: int = 3
    motion_channels: int = 13
    resolution: int = 64
    base_width: int = 64
    max_width: int = 512


@dataclass
class DataConfig:
    root: str = "data/puppet"  # Penn Action layout (frames/NNNN/*.jpg + labels/NNNN.mat) or a prepared store
    image_size: int = 64
    max_jump: int = 16  # k in [1, max_jump] drawn per sample (§5.2, random jumps in time)
    crop_margin: float = 0.15  # extra border around the subject's union box (structure.box)
    split: str = "all"  # all | train | test (official Penn flag)
    actions: list[str] = field(default_factory=list)  # empty: every action
    num_workers: int = 0
    # the paper's even three-way split of the videos (§7.1; data/penn_action.py paper_split, each action dealt
    # evenly): gm trains G_M, gr trains G_R, eval is held out for evaluation; all: every video
    part: str = "all"


@dataclass
class LossConfig:
    """Weights of Eq. 9 (a weight of 0 switches a term off) and the critic's penalty (Eq. 13-14)."""

    rec: float = 1.0  # Eq. 10, L1 reconstruction
    sparsity: float = 1.0  # Eq. 11, L1 on the mask m
    gen: float = 1.0  # Eq. 12, -D_I([Ĩ, M])
    gp_lambda: float = 10.0  # Eq. 13, λ
    # §7.3, Eq. 21: feature similarity loss added to Eq. 9 (pose tasks only, hence off by default).
    feat: float = 0.0  # weight of ℓ_feat; > 0 needs feat_vgg_weights
    feat_vgg_weights: str = ""  # torchvision ImageNet VGG16 state dict (vgg16-397923af.pth or .safetensors)
    feat_crop: int = 224  # side of the person crop fed to VGG16 (§7.3: 224)


LR_SCHEDULES = ("constant", "cosine")  # training/loop.py lr_factor
PRECISIONS = ("fp32", "bf16", "fp16")  # devices.py DTYPES
POSE_LOSSES = ("squared", "l2")  # losses/pose.py pose_loss
STEP_WEIGHTS = ("uniform", "relative", "window")  # losses/pose.py pose_loss (reference)


@dataclass
class LoopConfig:
    """What every training run shares (the loop in training/loop.py)."""

    steps: int = 100_000  # generator steps
    batch_size: int = 32  # §7.1
    lr: float = 1e-4  # §7.1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    checkpoint_every: int = 1000
    log_every: int = 50
    sample_every: int = 500
    keep_checkpoints: int = 2
    lr_schedule: str = "constant"  # constant | cosine (decay to 0 at `steps`; a pure function of the step)
    grad_clip: float = 0.0  # clip each update's gradient norm to this (0: off)


@dataclass
class TrainConfig(LoopConfig):
    betas: tuple[float, float] = (0.0, 0.9)  # §7.1
    # §7.1 does not say how many critic updates precede each generator update: the authors' released code
    # makes one D_I update per G_M update, as §6.2 alternates stage 2 (WGAN-GP's default would be 5).
    critic_steps: int = 1
    channels_last: bool = True  # NHWC memory format: ~1.2x faster convolutions on CPU (structvid bench forecast)


@dataclass
class ExperimentConfig:
    name: str = "forecast"
    model: ForecasterConfig = field(default_factory=ForecasterConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)

    def validate(self, source: str | None = None) -> "ExperimentConfig":
        """What one field cannot say alone (each field's own range is checked by from_dict, FIELD_RULES)."""
        m, c, d, w = self.model, self.critic, self.data, self.loss
        check_motion_channels(self.structure, {"model": m.motion_channels, "critic": c.motion_channels}, source)
        if m.resolution != d.image_size or c.resolution != d.image_size:
            raise UserError(
                f"model.resolution ({m.resolution}), critic.resolution ({c.resolution}) and data.image_size "
                f"({d.image_size}) must agree",
                source,
            )
        if m.resolution < 8 or m.resolution & (m.resolution - 1):
            raise UserError(f"resolution must be a power of two >= 8, got {m.resolution}", source)
        if w.rec == w.sparsity == w.gen == w.feat == 0:
            raise UserError("loss.rec, loss.sparsity, loss.gen and loss.feat are all 0: G_M would learn nothing "
                            "(Eq. 9)", source)
        return self


# ---------------------------------------------------------------- allowed values of each field


@dataclass(frozen=True)
class Range:
    """An interval of numbers (None: unbounded on that side); `open_low`/`open_high` exclude the bound."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, v: float) -> bool:
        if self.low is not None and (v <= self.low if self.open_low else v < self.low):
            return False
        return self.high is None or (v < self.high if self.open_high else v <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        return f"in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"


AT_LEAST_1, NON_NEGATIVE, POSITIVE, FRACTION = Range(1), Range(0), Range(0, open_low=True), Range(0, 1, open_high=True)
WIDTHS = {"image_channels": AT_LEAST_1, "motion_channels": AT_LEAST_1, "resolution": Range(8),
          "base_width": AT_LEAST_1, "max_width": AT_LEAST_1}

# The range (or the names) each field allows, per dataclass (a subclass inherits its parents' rules), checked by
# `check_fields` whenever `from_dict` builds a section from a YAML file, overrides or a run folder: a bad
# value stops the command at once, with the field's name, before any data or model is built. Optional fields
# (None) are not checked; float fields must be finite whatever their rule. Checks involving several fields
# are the `validate` methods'.
FIELD_RULES: dict[str, dict[str, Range | tuple[str, ...]]] = {
    "ForecasterConfig": {**WIDTHS, "dense_growth": AT_LEAST_1, "residual": RESIDUAL_MODES,
                         "skip_content": SKIP_CONTENTS},
    "CriticConfig": WIDTHS,
    "StructureConfig": {"kind": STRUCTURE_KINDS, "num_joints": AT_LEAST_1, "sigma": POSITIVE,
                        "normal_space": NORMAL_SPACES, "shading": SHADINGS},
    "DataConfig": {"image_size": Range(8), "max_jump": AT_LEAST_1, "crop_margin": NON_NEGATIVE,
                   "num_workers": Range(0, 128), "part": DATA_PARTS},  # thousands of workers would exhaust processes
    "LossConfig": {"rec": NON_NEGATIVE, "sparsity": NON_NEGATIVE, "gen": NON_NEGATIVE, "gp_lambda": NON_NEGATIVE,
                   "feat": NON_NEGATIVE, "feat_crop": AT_LEAST_1},
    "LoopConfig": {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "seed": NON_NEGATIVE,
                   "precision": PRECISIONS, "checkpoint_every": AT_LEAST_1, "log_every": AT_LEAST_1,
                   "sample_every": AT_LEAST_1, "keep_checkpoints": NON_NEGATIVE, "lr_schedule": LR_SCHEDULES,
                   "grad_clip": NON_NEGATIVE},
    "TrainConfig": {"betas": FRACTION, "critic_steps": AT_LEAST_1},
    "PoseLSTMConfig": {"num_joints": AT_LEAST_1, "hidden_size": AT_LEAST_1, "num_layers": AT_LEAST_1,
                       "observed": Range(2), "horizon": AT_LEAST_1, "dropout": FRACTION},
    "PoseDataConfig": {"val_fraction": FRACTION, "stride": AT_LEAST_1, "max_start": NON_NEGATIVE,
                       "min_horizon": AT_LEAST_1, "speed": POSITIVE, "dataset": POSE_DATASETS},
    "PoseTrainConfig": {"loss": POSE_LOSSES, "step_weights": STEP_WEIGHTS, "weight_decay": NON_NEGATIVE},
}


def check_motion_channels(structure: StructureConfig, sections: dict[str, int], source: str | None = None) -> None:
    """Every network's motion_channels must be the structure's C (they were stored three times unchecked)."""
    bad = {k: v for k, v in sections.items() if v != structure.channels}
    if bad:
        names = ", ".join(f"{k}.motion_channels ({v})" for k, v in bad.items())
        raise UserError(f"{names} must equal the {structure.kind} structure's {structure.channels} channels "
                        "(structure section)", source)


# Keys that moved to another section: named in the error instead of "unknown key"
MOVED = {"data.sigma": "structure.sigma"}


def check_fields(cfg: Any, source: str | None = None, prefix: str = "") -> None:
    """UserError naming the first field of dataclass `cfg` outside its FIELD_RULES, or a non-finite float."""
    rules: dict[str, Range | tuple[str, ...]] = {}
    for klass in reversed(type(cfg).__mro__):
        rules.update(FIELD_RULES.get(klass.__name__, {}))
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise UserError(f"{key} must be a finite number, got {value}", source)
        rule = rules.get(f.name)
        if rule is None or value is None:
            continue
        if isinstance(rule, Range):
            if not all(isinstance(v, (int, float)) and v in rule for v in values):
                raise UserError(f"{key} must be {rule}, got {value}", source)
        elif value not in rule:
            raise UserError(f"{key} must be one of {', '.join(rule)}, got {value!r}", source)


# ---------------------------------------------------------------- dict <-> dataclass


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict (tuples become lists) suitable for YAML/JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def from_dict(cls: type, data: dict[str, Any], source: str | None = None, prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys, coercing simple types and checking each
    field's value (`check_fields`); every error is a UserError naming `source` and the key."""
    if not isinstance(data, dict):
        raise UserError(f"section {prefix.rstrip('.') or '<root>'} must be a mapping, got {type(data).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    for u in sorted(unknown):
        if prefix + u in MOVED:
            raise UserError(f"config key {prefix + u} moved to {MOVED[prefix + u]}", source)
    if unknown:
        raise UserError(f"unknown config key(s) {sorted(prefix + u for u in unknown)}", source)
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value or {}, source, prefix + name + ".")
        else:
            kwargs[name] = _coerce(value, default, source, prefix + name, str(fields[name].type))
    cfg = cls(**kwargs)
    check_fields(cfg, source, prefix)
    return cfg


_EXAMPLES = {"int": 0, "float": 0.0, "str": "", "bool": False}  # a value of each annotated type, for _coerce


def _coerce(value: Any, default: Any, source: str | None, key: str, annotation: str = "") -> Any:
    """`value` as the type of `default`; an `X | None` field (default None) takes None or an X, and the
    items of a `list[X]` are coerced to X."""
    kinds = [k for k in annotation.replace(" ", "").split("|") if k != "None"]
    item_kind = kinds[0][5:-1] if kinds and kinds[0].startswith("list[") else ""
    if default is None:
        if value is None or not kinds:
            return value
        default = [] if item_kind else _EXAMPLES.get(kinds[0], value)
    try:
        if isinstance(value, bool) and not isinstance(default, bool) and isinstance(default, (int, float)):
            raise ValueError(value)  # YAML's true/false is no number
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(type(d)(v) for d, v in zip(default, value, strict=True))
        if isinstance(default, list):
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if item_kind in _EXAMPLES:
                return [_coerce(v, _EXAMPLES[item_kind], source, key) for v in items]
            return items
        if isinstance(default, str):
            if isinstance(value, (list, dict)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"config key {key}: cannot use {value!r} (expected {type(default).__name__})", source) from None
    return value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["train.steps=10", "model.dense=false"]` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except (yaml.YAMLError, RecursionError):
            raise UserError(f"override {item!r}: the value is not valid YAML (quote it, or close its brackets)") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {p} was already given a value, it cannot also hold fields")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError("config file not found", p)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({e.__class__.__name__}: {str(e).splitlines()[0]})", p) from None
    except RecursionError:  # "[[[[..." thousands deep
        raise UserError("not valid YAML (nested too deeply)", p) from None
    except UnicodeDecodeError:
        raise UserError("not valid YAML (not UTF-8 text)", p) from None
    if not isinstance(data, dict):
        raise UserError("config must be a YAML mapping", p)
    return data


def load_section(cls: type, path: str | Path, section: str) -> Any:
    """One section of an experiment YAML (e.g. a run folder's config.yaml) as dataclass `cls`, its values
    checked; a missing or empty section gives the defaults."""
    return from_dict(cls, load_yaml(path).get(section) or {}, str(path), section + ".")


def load_config(cls: type, path: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """Load `cls` from an optional YAML file plus `section.field=value` overrides."""
    data = load_yaml(path) if path else {}
    data = merge(data, parse_overrides(overrides))
    cfg = from_dict(cls, data, str(path) if path else None)
    if hasattr(cfg, "validate"):
        cfg.validate(str(path) if path else None)
    return cfg


def save_yaml(cfg: Any, path: str | Path) -> None:
    from structvid.io.files import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ---------------------------------------------------------------- pose forecasting (G_C for bodies, §4)


@dataclass
class PoseLSTMConfig:
    """Sequence-to-sequence pose LSTM (§4, Eq. 3-5, after Villegas et al. 2017b)."""

    num_joints: int = 13
    hidden_size: int = 1024  # Villegas et al. 2017b use a 1024-unit LSTM
    num_layers: int = 2
    observed: int = 10  # T_obs
    horizon: int = 32  # K at training time (32 Penn Action, 64 Human3.6M)
    residual: bool = True  # decoder predicts the change from the previous pose (see pose_lstm.py)
    velocity_input: bool = True  # feed [pose, pose - previous pose] (see pose_lstm.py)
    # invisible observed joints: "stored" keeps their annotated coordinates where known, "carry" replaces
    # them by the last visible position (see data/pose_windows.py fill_invisible)
    invisible: str = "stored"
    dropout: float = 0.0  # between stacked LSTM layers (nn.LSTM's dropout; needs num_layers >= 2)
    # at inference (eval mode) average the forecast of the poses with the mirrored forecast of their
    # mirror image (test-time augmentation, our addition; needs the 13-joint Penn skeleton; see pose_lstm.py)
    mirror_average: bool = False
    # at inference (eval mode) move each forecast pose this fraction of the way back to the last observed
    # one, x_T + (1 - b)(y_k - x_T): a shrinkage towards zero velocity chosen on training-split sequences
    # the model did not train on (our addition, see pose_lstm.py and assets/demo/TRAINING.md); 0: off
    zero_velocity_blend: float = 0.0


@dataclass
class PoseDataConfig:
    # penn_action: `root` holds labels/NNNN.mat; human36m: `root` is a Human3.6M folder (data/human36m.py), whose
    # 32 joints are mapped to the 13 Penn joints, split train = S1, S5, S6, S7, S8, test = S9, S11 (§7.1)
    dataset: str = "penn_action"
    root: str = "data/penn_action"
    # empty: the paper's 8 actions (Penn Action), all 15 (Human3.6M); [all]: all 15
    actions: list[str] = field(default_factory=list)
    split: str = "train"  # official flag (Penn Action) or subjects (Human3.6M): train | test | all
    val_fraction: float = 0.1  # sequences held out of the split for validation
    stride: int = 4  # training windows start every `stride` frames
    # training windows start at frames 0..max_start only (None: anywhere). The §7.3 protocol forecasts from
    # each sequence's first 10 frames, and Penn Action clips begin where the action begins (a pitcher's
    # wind-up, a golfer at address), so windows from the start match what is evaluated (TRAINING.md)
    max_start: int | None = None
    # sequences (and window starts) with fewer than model.horizon future frames still train, on the
    # horizons they have (>= min_horizon; later steps are masked like invisible joints); None: skip them
    min_horizon: int | None = None
    mirror: bool = True  # augmentation: mirror half the windows (negate x, swap left/right joints)
    # augmentation: play each window at a speed drawn log-uniformly from this range (1.0, 1.0: off),
    # resampling the joints linearly in time (see PoseWindows.window)
    speed: tuple[float, float] = (1.0, 1.0)
    # actions whose sequences (all of them in `split`) are added to the training windows only; validation
    # stays on the held-out sequences of `actions` ([all]: every action not in `actions`)
    extra_train_actions: list[str] = field(default_factory=list)
    # draw training windows with every action equally likely (each window weighted 1 / its action's window count)
    # instead of uniformly: the short, rare actions (jump rope, jumping jacks) are otherwise a few % of the batches
    balance_actions: bool = False


@dataclass
class PoseTrainConfig(LoopConfig):
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "squared"  # squared (Eq. 5) | l2 (unsquared distance, see losses/pose.py)
    # uniform: Eq. 5's mean over all steps; relative: each step's error divided by zero velocity's on the
    # same batch, the K ratios averaged; window: that ratio per window and step, so a window that barely moves
    # counts as much as one that moves a lot (losses/pose.py)
    step_weights: str = "uniform"
    # decoupled weight decay (AdamW); §4 does not regularise the LSTM, 0 keeps plain Adam's update
    weight_decay: float = 0.0


@dataclass
class PoseExperimentConfig:
    name: str = "poses"
    model: PoseLSTMConfig = field(default_factory=PoseLSTMConfig)
    data: PoseDataConfig = field(default_factory=PoseDataConfig)
    train: PoseTrainConfig = field(default_factory=PoseTrainConfig)

    def validate(self, source: str | None = None) -> "PoseExperimentConfig":
        """What one field cannot say alone (each field's own range is checked by from_dict, FIELD_RULES)."""
        if self.data.min_horizon is not None and self.data.min_horizon > self.model.horizon:
            raise UserError(f"data.min_horizon must be in 1..model.horizon ({self.model.horizon}) or null, "
                            f"got {self.data.min_horizon}", source)
        lo, hi = self.data.speed
        if not lo <= hi:
            raise UserError(f"data.speed must be a range 0 < low <= high, got {self.data.speed}", source)
        return self


# ---------------------------------------------------------------- motion refining stage (G_R, D_V, §6)

SKIP_MODES = ("concat", "add")  # models/refiner.py: how an encoder level joins the decoder


@dataclass
class RefinerConfig:
    """G_R, the motion refining network (§6.1, Table 2, Eq. 15): 3D conv encoder-decoder on [Ṽ, M].

    Strided 4x4x4 convolutions halve the clip down to a 4x4 map (Table 2 at 16x64x64: 8x32x32 ... 1x4x4),
    a 1x4x4 layer takes it to 1x1; transposed convolutions mirror them back. At 128x128 one more level is
    added (as G_M does), widths capped at `max_width`.
    """

    image_channels: int = 3
    motion_channels: int = 13
    resolution: int = 64  # 64 or 128
    clip_length: int = 16  # K, a power of two: 16 for bodies, 32 for faces (§7.1)
    base_width: int = 128  # Table 2: E0..E3 = 128, 256, 512, 1024; decoder 512, 256, 128, (64)
    max_width: int = 1024
    # Encoder levels E_i whose output joins the decoder at the same size. None: every level from E2 on
    # (§6.1 removes the skips "from the first two layers"); [] switches skips off.
    skip_levels: list[int] | None = None
    skip_mode: str = "concat"  # concat (U-Net) | add (a 1x1x1 conv matches the encoder's width first)


@dataclass
class VideoCriticConfig:
    """D_V, the conditional video critic (§6.2, Eq. 17-20): G_R's encoder on [V, M], WGAN scalar head."""

    image_channels: int = 3
    motion_channels: int = 13
    resolution: int = 64
    clip_length: int = 16
    base_width: int = 128
    max_width: int = 1024


@dataclass
class RefineLossConfig:
    """Weights of Eq. 16-17 for G_R (a weight of 0 switches a term off) and of Eq. 19-20 for D_V."""

    rec: float = 1.0  # Eq. 16 ℓ_rec(V, V̄), L1 (Eq. 10)
    sparsity: float = 1.0  # Eq. 16 ℓ_r(m), L1 on the spatiotemporal mask (Eq. 11)
    gen_video: float = 1.0  # Eq. 17, −D_V([V̄, M])
    gen_image: float = 1.0  # Eq. 17, −(1/K) Σ_i D_I([Ī_i, M_i])
    rank: float = 1.0  # γ of Eq. 16 and Eq. 19 (§7.1: 1)
    gp_lambda: float = 10.0  # λ of Eq. 19 (and of Eq. 13 for D_I)
    # D_V blocks whose feature maps give the Gram matrices of Eq. 18 (0 = E0); §6.2 says "different
    # layers" without naming them: the first two, where motion texture is still resolved in time.
    rank_layers: list[int] = field(default_factory=lambda: [0, 1])


@dataclass
class RefineCriticsConfig:
    """The two critics of stage 2 (§6.2), trained together in one phase: D_V and D_I."""

    video: VideoCriticConfig = field(default_factory=VideoCriticConfig)
    image: CriticConfig = field(default_factory=CriticConfig)


@dataclass
class RefineDataConfig(DataConfig):
    """Stage-2 data (§6.2, §7.1): clips of K real frames, their motion maps, and the frozen G_M's coarse clip."""

    part: str = "gr"  # §7.1: G_R trains on the second third of the videos (G_M on gm)
    forecaster: str = ""  # the frozen G_M: a `train forecast` run or checkpoint folder
    # Coarse videos made once by G_M (from each video's first frame, as at inference) and kept on disk under
    # a key of G_M's weights and the data; "": $STRUCTVID_CACHE/coarse (io/download.py cache_dir)
    cache: str = ""
    # a folder of videos made by another generator (NNNN.mp4 per video name, §7.4): refine those instead of G_M's
    coarse_videos: str = ""


@dataclass
class RefineTrainConfig(TrainConfig):
    critic_steps: int = 1  # §6.2 alternates one critic update (D_I and D_V) with one G_R update


@dataclass
class RefineExperimentConfig:
    name: str = "refine"
    model: RefinerConfig = field(default_factory=RefinerConfig)
    critic: RefineCriticsConfig = field(default_factory=RefineCriticsConfig)
    data: RefineDataConfig = field(default_factory=RefineDataConfig)
    loss: RefineLossConfig = field(default_factory=RefineLossConfig)
    train: RefineTrainConfig = field(default_factory=RefineTrainConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)

    def validate(self, source: str | None = None) -> "RefineExperimentConfig":
        """What one field cannot say alone (each field's own range is checked by from_dict, FIELD_RULES)."""
        m, v, i, d = self.model, self.critic.video, self.critic.image, self.data
        sizes = {"model.resolution": m.resolution, "critic.video.resolution": v.resolution,
                 "critic.image.resolution": i.resolution, "data.image_size": d.image_size}
        if len(set(sizes.values())) > 1:
            raise UserError(f"resolutions must agree: {sizes}", source)
        if m.clip_length != v.clip_length:
            raise UserError(f"model.clip_length ({m.clip_length}) and critic.video.clip_length ({v.clip_length}) "
                            "must agree", source)
        check_motion_channels(self.structure, {"model": m.motion_channels, "critic.video": v.motion_channels,
                                               "critic.image": i.motion_channels}, source)
        if m.clip_length < 2 or m.clip_length & (m.clip_length - 1):
            raise UserError(f"model.clip_length must be a power of two >= 2, got {m.clip_length}", source)
        if not d.forecaster and not d.coarse_videos:
            raise UserError("data.forecaster (the G_M run whose frames G_R refines) or data.coarse_videos is needed",
                            source)
        w = self.loss
        if w.rec == w.sparsity == w.gen_video == w.gen_image == w.rank == 0:
            raise UserError("every loss weight is 0: G_R would learn nothing (Eq. 16)", source)
        return self


FIELD_RULES.update({
    "RefinerConfig": {**WIDTHS, "clip_length": Range(2), "skip_mode": SKIP_MODES, "skip_levels": NON_NEGATIVE},
    "VideoCriticConfig": {**WIDTHS, "clip_length": Range(2)},
    "RefineLossConfig": {"rec": NON_NEGATIVE, "sparsity": NON_NEGATIVE, "gen_video": NON_NEGATIVE,
                         "gen_image": NON_NEGATIVE, "rank": NON_NEGATIVE, "gp_lambda": NON_NEGATIVE,
                         "rank_layers": NON_NEGATIVE},
})
