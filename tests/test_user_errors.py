"""Every ordinary mistake gets one clear line on stderr and exit status 2, no traceback (issue 8 §4).

Each table row is one hostile input and a piece of text the error line must contain (the option, field or
file it is about). Rows run `structvid.cli.main` in-process; none gets as far as training or generating.
"""

import json
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from structvid.cli import DEMO_DIR, main

POSES = DEMO_DIR / "example" / "poses.json"
IMAGE = DEMO_DIR / "example" / "image.png"


def assert_one_line_error(argv, capsys, expected: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- config values (overrides and files)

CONFIG_VALUES = [("forecast", o, e) for o, e in [
    ("train.lr=-1", "train.lr"), ("train.lr=nan", "train.lr"), ("train.lr=.inf", "train.lr"), ("train.lr=0", "train.lr"),
    ("train.batch_size=0", "train.batch_size"), ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("train.log_every=0", "train.log_every"), ("train.sample_every=0", "train.sample_every"),
    ("train.steps=0", "train.steps"), ("train.steps=-5", "train.steps"), ("train.critic_steps=0", "train.critic_steps"),
    ("train.seed=-1", "train.seed"), ("train.betas=[1.5,0.9]", "train.betas"), ("train.grad_clip=nan", "train.grad_clip"),
    ("structure.sigma=0", "structure.sigma"), ("structure.sigma=nan", "structure.sigma"),
    ("data.sigma=2", "data.sigma moved to structure.sigma"), ("structure.kind=mesh", "structure.kind"),
    ("model.motion_channels=3", "must equal the joints structure's 13 channels"), ("data.num_workers=-1", "data.num_workers"),
    ("data.crop_margin=-0.5", "data.crop_margin"), ("data.crop_margin=nan", "data.crop_margin"),
    ("data.num_workers=100000", "data.num_workers"),
    ("model.base_width=0", "model.base_width"), ("model.base_width=-3", "model.base_width"),
    ("critic.base_width=0", "critic.base_width"), ("model.max_width=0", "model.max_width"),
    ("model.dense_growth=0", "model.dense_growth"), ("model.motion_channels=0", "model.motion_channels"),
    ("loss.rec=-1", "loss.rec"), ("loss.gp_lambda=nan", "loss.gp_lambda"),
    ("loss.rec=0 loss.sparsity=0 loss.gen=0", "all 0"), ("train.steps=true", "train.steps"),
    ("train.steps=5 train.steps.x=1", "train.steps.x"), ("train.steps=[1", "train.steps=[1"),
]] + [("poses", o, e) for o, e in [
    ("data.stride=0", "data.stride"), ("data.stride=-2", "data.stride"), ("model.hidden_size=0", "model.hidden_size"),
    ("model.num_layers=0", "model.num_layers"), ("data.max_start=abc", "data.max_start"),
    ("data.min_horizon=abc", "data.min_horizon"), ("data.speed=[1,.inf]", "data.speed"),
    ("train.weight_decay=nan", "train.weight_decay"), ("train.lr=nan", "train.lr"), ("train.steps=0", "train.steps"),
]]


@pytest.mark.parametrize("stage, overrides, expected", CONFIG_VALUES, ids=[f"{s}:{o}" for s, o, _ in CONFIG_VALUES])
def test_bad_config_value(tmp_path, capsys, stage, overrides, expected):
    # --dry-run: a value that slipped through validation would print the config and exit 0
    assert_one_line_error(["train", stage, "--out", tmp_path / "run", "--dry-run", *overrides.split()], capsys,
                          expected)
    assert not (tmp_path / "run").exists()


CONFIG_FILES = [
    ("invalid.yaml", "train: {steps: [1\n", "not valid YAML"),
    ("deep.yaml", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("utf16.yaml", "\ufefftrain: {}".encode("utf-16"), "not UTF-8"),
    ("values.yaml", "train:\n  lr: -1\n", "train.lr"),
    ("section.yaml", "train: 5\n", "section train"),
]


@pytest.mark.parametrize("name, text, expected", CONFIG_FILES, ids=[c[0] for c in CONFIG_FILES])
def test_bad_config_file(tmp_path, capsys, name, text, expected):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert_one_line_error(["train", "forecast", "--config", path, "--out", tmp_path / "run", "--dry-run"], capsys,
                          f"{name}: ")


# ---------------------------------------------------------------- option ranges

GEN = ["generate", "--image", IMAGE, "--poses", POSES, "--device", "cpu"]
EVAL = ["--checkpoint", "c", "--data", "d", "--out", "o"]
OPTIONS = [
    (GEN + ["--fps", "0"], "--fps"), (GEN + ["--fps", "-5"], "--fps"), (GEN + ["--fps", "nan"], "--fps"),
    (GEN + ["--fps", "inf"], "--fps"), (GEN + ["--fps", "1e-9"], "--fps"), (GEN + ["--frames", "0"], "--frames"),
    (GEN + ["--frames", "100000000000"], "--frames"),
    (["evaluate", "forecast", *EVAL, "--frames", "0"], "--frames"),
    (["evaluate", "forecast", *EVAL, "--max-videos", "0"], "--max-videos"),
    (["evaluate", "video", "--protocol", "penn", *EVAL, "--max-videos", "-2"], "--max-videos"),
    (["bench", "forecast", "--batch", "0"], "--batch"), (["bench", "forecast", "--resolution", "7"], "--resolution"),
    (["bench", "forecast", "--steps", "0"], "--steps"), (["bench", "forecast", "--width", "-3"], "--width"),
    (["bench", "puppet", "--frames", "0"], "--frames"), (["bench", "puppet", "--size", "100000"], "--size"),
    (["data", "puppet", "--out", "o", "--size", "100000"], "--size"),
    (["data", "puppet", "--out", "o", "--frames", "1"], "--frames"),
    (["data", "puppet", "--out", "o", "--num-videos", "0"], "--num-videos"),
    (["data", "prepare", "r", "--out", "o", "--size", "100"], "--size"),
    (["data", "prepare", "r", "--out", "o", "--crop-margin", "nan"], "--crop-margin"),
    (["data", "prepare", "r", "--out", "o", "--workers", "0"], "--workers"),
]


@pytest.mark.parametrize("argv, expected", OPTIONS, ids=[" ".join(map(str, a[-2:])) + f"-{i}"
                                                         for i, (a, _) in enumerate(OPTIONS)])
def test_bad_option(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)  # relative output names land here if a check is missing
    assert_one_line_error(argv, capsys, expected)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- input files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Bad pose files, images and checkpoint folders, by name."""
    d = tmp_path_factory.mktemp("hostile")
    joints = np.array(json.loads(POSES.read_text())["joints"], np.float32)
    hidden = joints.copy()
    hidden[..., 2] = 0
    point = joints.copy()
    point[..., :2] = 20.0
    (d / "invisible.json").write_text(json.dumps(hidden.tolist()))
    (d / "point.json").write_text(json.dumps(point.tolist()))
    (d / "size0.json").write_text(json.dumps({"joints": joints.tolist(), "image_size": [0, 0]}))
    (d / "negative.json").write_text(json.dumps({"joints": joints.tolist(), "image_size": [-64, 64]}))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "fake.mat").write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(200))
    (d / "empty.mat").write_bytes(b"")
    scipy.io.savemat(d / "dims0.mat", {"x": joints[..., 0], "y": joints[..., 1], "visibility": joints[..., 2],
                                       "dimensions": [0, 0, len(joints)]})
    np.save(d / "complex.npy", joints[..., :2].astype(np.complex64))
    Image.new("RGB", (1, 1)).save(d / "1x1.png")
    Image.new("RGB", (64, 3)).save(d / "64x3.png")
    (d / "folder").mkdir()
    for name, text in [("ck_invalid", "data: [1\n"), ("ck_list", "- 1\n"), ("ck_jump", "data: {max_jump: 0}\n"),
                       ("ck_margin", "data: {crop_margin: .nan}\n"), ("ck_deep", "[" * 100_000 + "]" * 100_000)]:
        # a checkpoint folder (no pipeline.json): its run settings come from config.yaml
        shutil.copytree(DEMO_DIR, d / name, ignore=shutil.ignore_patterns("example", "*.md", "pipeline.json"))
        (d / name / "config.yaml").write_text(text)
    return d


INPUT_FILES = [
    ("--poses", "invisible.json", "no visible joint"), ("--poses", "point.json", "one point"),
    ("--poses", "size0.json", "image_size"), ("--poses", "negative.json", "image_size"),
    ("--poses", "deep.json", "nested too deeply"), ("--poses", "fake.mat", "fake.mat"),
    ("--poses", "empty.mat", "empty.mat"), ("--poses", "dims0.mat", "dimensions"), ("--poses", "complex.npy", "complex"),
    ("--observed-poses", "invisible.json", "no visible joint"), ("--image", "1x1.png", "1x1 pixels"),
    ("--image", "64x3.png", "64x3 pixels"), ("--image", "folder", "is a folder"), ("--checkpoint", "ck_invalid", "config.yaml: not valid YAML"),
    ("--checkpoint", "ck_list", "config.yaml"), ("--checkpoint", "ck_jump", "data.max_jump"),
    ("--checkpoint", "ck_margin", "data.crop_margin"), ("--checkpoint", "ck_deep", "nested too deeply"),
]


@pytest.mark.parametrize("option, name, expected", INPUT_FILES, ids=[f"{o}={n}" for o, n, _ in INPUT_FILES])
def test_bad_input_file(hostile, tmp_path, capsys, option, name, expected):
    args = {"--image": IMAGE, "--poses": POSES, "--checkpoint": DEMO_DIR}
    if option == "--observed-poses":
        del args["--poses"]
    args[option] = hostile / name
    out = tmp_path / "out.mp4"
    line = assert_one_line_error(["generate", *[x for kv in args.items() for x in kv], "--out", out,
                                  "--device", "cpu"], capsys, expected)
    assert name in line and not out.exists()


def test_out_of_memory_is_one_line(puppet_root, tmp_path, capsys):
    from tests.conftest import TINY

    huge = ["model.base_width=16777216", "model.max_width=16777216"]  # a 2^24 x 2^24 x 3 x 3 conv: petabytes
    assert_one_line_error(["train", "forecast", "--out", tmp_path / "run", "--data", puppet_root, "--no-progress",
                           *TINY, *huge], capsys, "out of memory")


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"val_names": 5}', '{"other": []}'])
def test_bad_heldout_summary(puppet_root, tmp_path, capsys, text):
    run = tmp_path / "run"
    shutil.copytree(DEMO_DIR, run, ignore=shutil.ignore_patterns("example", "*.md"))
    (run / "data.json").write_text(text)
    assert_one_line_error(["evaluate", "poses", "--checkpoint", run, "--data", puppet_root, "--out", tmp_path / "o",
                           "--heldout", "--actions", "all", "--device", "cpu"], capsys, "data.json")
