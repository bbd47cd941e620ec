from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from structvid.data.penn_action import PennActionDataset, PennSequence, frame_name, read_label, write_label
from structvid.structure.skeleton import PENN_ACTIONS
from structvid.errors import UserError


@pytest.fixture(scope="module")
def labels(shared_data: Path) -> Path:
    return shared_data / "penn_action" / "labels"


def synthetic(name: str = "0007", nframes: int = 5, h: int = 24, w: int = 32) -> PennSequence:
    rng = np.random.default_rng(nframes)
    return PennSequence(
        name=name, action="golf_swing", pose="front", x=rng.uniform(0, w - 1, (nframes, 13)),
        y=rng.uniform(0, h - 1, (nframes, 13)), visibility=rng.integers(0, 2, (nframes, 13)).astype(np.uint8),
        bbox=np.tile([1.0, 2.0, 20.0, 22.0], (nframes, 1)), dimensions=(h, w, nframes), train=0)


def test_known_file(labels: Path):
    seq = read_label(labels / "0002.mat")
    assert seq.name == "0002" and seq.action == "baseball_pitch" and seq.pose == "back"
    assert seq.nframes == 80 and seq.dimensions == (270, 480, 80) and seq.train == 1
    assert seq.x.shape == seq.y.shape == seq.visibility.shape == (80, 13) and seq.bbox.shape == (80, 4)
    assert seq.x.dtype == np.float64 and seq.visibility.dtype == np.uint8
    assert seq.x[0, 0] == 48.0 and seq.y[0, 0] == 52.0
    j = seq.joints
    assert j.shape == (80, 13, 3) and j.dtype == np.float32
    np.testing.assert_array_equal(j[..., 2], seq.visibility)


def test_all_shared_labels_read(labels: Path):
    files = sorted(labels.glob("*.mat"))
    assert len(files) == 1258
    for f in files:
        seq = read_label(f)
        assert seq.action in PENN_ACTIONS and seq.pose in ("front", "back", "left", "right")
        assert seq.bbox.shape == (seq.nframes, 4) and seq.dimensions[2] == seq.nframes
    # 1865.mat is one bbox row short in the original data: padded with its last row.
    seq = read_label(labels / "1865.mat")
    np.testing.assert_array_equal(seq.bbox[-1], seq.bbox[-2])


@pytest.mark.parametrize("name", ["0002", "0495", "1047", "1516", "1653", "1865", "2173"])
def test_round_trip_real(labels: Path, tmp_path: Path, name: str):
    path = labels / f"{name}.mat"
    if not path.exists():
        pytest.skip(f"{name}.mat not in the shared subset")
    seq = read_label(path)
    write_label(tmp_path / path.name, seq)
    assert read_label(tmp_path / path.name) == seq
    # Same field names and types as the real files.
    real, ours = scipy.io.loadmat(str(path)), scipy.io.loadmat(str(tmp_path / path.name))
    assert {k for k in real if not k.startswith("__")} == {k for k in ours if not k.startswith("__")}
    for key in ("visibility", "train", "dimensions", "nframes", "bbox"):
        assert ours[key].dtype == real[key].dtype and ours[key].ndim == real[key].ndim, key
    assert ours["action"].tolist() == real["action"].tolist() and ours["x"].dtype == np.float64


def test_round_trip_synthetic(tmp_path: Path):
    for n in (1, 5, 300):  # 300 frames: nframes no longer fits the real files' uint8
        seq = synthetic(nframes=n)
        seq.x[0, 3] = np.nan  # allowed: joint 3 may be invisible
        seq.visibility[0, 3] = 0
        write_label(tmp_path / "0007.mat", seq)
        assert read_label(tmp_path / "0007.mat") == seq
    assert scipy.io.loadmat(str(tmp_path / "0007.mat"))["nframes"].dtype == np.uint16
    assert [p.name for p in tmp_path.iterdir()] == ["0007.mat"]  # no temp files left


def _corrupt(tmp_path: Path, **changes) -> Path:
    seq = synthetic()
    path = tmp_path / "0042.mat"
    write_label(path, seq)
    mat = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    for key, value in changes.items():
        if value is None:
            del mat[key]
        else:
            mat[key] = value
    scipy.io.savemat(str(path), mat)
    return path


def test_reader_errors_name_the_file(tmp_path: Path):
    with pytest.raises(UserError, match="0099.mat.*not found"):
        read_label(tmp_path / "0099.mat")
    junk = tmp_path / "0100.mat"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="0100.mat.*cannot read"):
        read_label(junk)
    with pytest.raises(UserError, match=r"0042.mat.*missing field\(s\) bbox"):
        read_label(_corrupt(tmp_path, bbox=None))
    x = synthetic().x.copy()
    with pytest.raises(UserError, match="0042.mat.*joint count|0042.mat.*expected"):
        read_label(_corrupt(tmp_path, x=x[:, :12]))
    with pytest.raises(UserError, match="0042.mat.*'y'"):
        read_label(_corrupt(tmp_path, y=np.zeros((4, 13))))
    with pytest.raises(UserError, match="0042.mat.*bbox"):
        read_label(_corrupt(tmp_path, bbox=np.zeros((2, 4))))
    with pytest.raises(UserError, match="0042.mat.*dimensions"):
        read_label(_corrupt(tmp_path, dimensions=np.array([[24, 32, 9]], np.uint16)))
    with pytest.raises(UserError, match="0042.mat.*action"):
        read_label(_corrupt(tmp_path, action=np.zeros(3)))


def test_nan_visible_joint_names_file_and_frame(tmp_path: Path):
    seq = synthetic()
    seq.visibility[2, 4] = 1
    seq.y[2, 4] = np.nan
    write_label(tmp_path / "0042.mat", seq)
    with pytest.raises(UserError, match="0042.mat.*right_elbow.*frame 3") as err:
        read_label(tmp_path / "0042.mat")
    assert err.value.path.endswith("0042.mat")


def make_layout(root: Path, names=("0001", "0002", "0010"), nframes: int = 3) -> None:
    for k, name in enumerate(names):
        seq = synthetic(name, nframes)
        seq.action = PENN_ACTIONS[k]
        seq.train = k % 2
        write_label(root / "labels" / f"{name}.mat", seq)
        folder = root / "frames" / name
        folder.mkdir(parents=True)
        for t in range(nframes):
            img = np.zeros((24, 32, 3), np.uint8)
            img[..., 0] = 200  # red in RGB
            img[..., 1] = 10 * t
            cv2.imwrite(str(folder / frame_name(t)), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])


def test_dataset_layout(tmp_path: Path):
    make_layout(tmp_path, names=("0010", "0002", "0001", "10000"))
    ds = PennActionDataset(tmp_path)
    assert ds.names == ["0001", "0002", "0010", "10000"] and len(ds) == 4
    assert ds.label("0002") is ds.label("0002")  # cached
    paths = ds.frame_paths("0002")
    assert [p.name for p in paths] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    frames = ds.load_frames("0002")
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    assert abs(int(frames[0, 5, 5, 0]) - 200) < 4 and frames[0, 5, 5, 2] < 4  # RGB order
    assert ds.load_frames("0002", [2]).shape == (1, 24, 32, 3)
    assert abs(int(ds.load_frames("0002", [2])[0, 5, 5, 1]) - 20) < 4
    assert PennActionDataset(tmp_path, split="train").names == ["0002", "10000"]
    assert PennActionDataset(tmp_path, split="test").names == ["0001", "0010"]
    assert PennActionDataset(tmp_path, actions=[PENN_ACTIONS[1]]).names == ["0002"]


def test_dataset_errors(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        PennActionDataset(tmp_path / "nope")
    with pytest.raises(UserError, match="labels"):
        PennActionDataset(tmp_path)
    make_layout(tmp_path)
    with pytest.raises(UserError, match="split"):
        PennActionDataset(tmp_path, split="val")
    with pytest.raises(UserError, match="unknown action"):
        PennActionDataset(tmp_path, actions=["dancing"])
    ds = PennActionDataset(tmp_path)
    (tmp_path / "frames" / "0002" / "000002.jpg").unlink()
    with pytest.raises(UserError, match="000002.jpg.*missing"):
        ds.load_frames("0002")
    (tmp_path / "frames" / "0002" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="000002.jpg.*unreadable"):
        ds.load_frames("0002")
    cv2.imwrite(str(tmp_path / "frames" / "0002" / "000002.jpg"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(UserError, match="000002.jpg.*label says"):
        ds.load_frames("0002")
    with pytest.raises(UserError, match="0077.mat"):
        ds.label("0077")


def test_shared_dataset_filters(shared_data: Path):
    ds = PennActionDataset(shared_data / "penn_action", actions=["golf_swing"])
    assert len(ds) == 89 and ds.names == sorted(ds.names)
    assert all(ds.label(n).action == "golf_swing" for n in ds.names)
    assert PennActionDataset(shared_data / "penn_action", split="test").names == []  # train split only


def _set_flag(path: Path, value: np.ndarray) -> None:
    mat = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    mat["train"] = value
    scipy.io.savemat(str(path), mat)


def test_official_test_half_flag_minus_one_and_zero(tmp_path: Path):
    """The real test half is marked train = -1 (re-packings: 0); both are the test split, 1 is train."""
    from structvid.data.prepare import PreparedStore, prepare_dataset

    names = ("0001", "0002", "0003", "0004")
    make_layout(tmp_path / "src", names=names)
    labels = tmp_path / "src" / "labels"
    _set_flag(labels / "0001.mat", np.array([[1]], np.int32))
    _set_flag(labels / "0002.mat", np.array([[-1]], np.int32))  # the real files' dtype and value
    _set_flag(labels / "0003.mat", np.array([[0]], np.uint8))
    _set_flag(labels / "0004.mat", np.array([[-1.0]]))  # a double, as MATLAB saves by default
    assert [read_label(labels / f"{n}.mat").train for n in names] == [1, -1, 0, -1]
    root = tmp_path / "src"
    assert PennActionDataset(root, split="train").names == ["0001"]
    assert PennActionDataset(root, split="test").names == ["0002", "0003", "0004"]
    assert PennActionDataset(root, split="all").names == list(names)
    # written back as the real files write it: int32 -1
    seq = read_label(labels / "0002.mat")
    write_label(tmp_path / "0002.mat", seq)
    mat = scipy.io.loadmat(str(tmp_path / "0002.mat"))
    assert mat["train"].dtype == np.int32 and int(mat["train"][0, 0]) == -1
    assert read_label(tmp_path / "0002.mat") == seq
    # a prepared store keeps the flags and selects the same halves
    store = PreparedStore(prepare_dataset(root, tmp_path / "store", 16, workers=1, progress=False))
    assert store.select(split="test") == ["0002", "0003", "0004"] and store.select(split="train") == ["0001"]


@pytest.mark.parametrize("value", [np.array([[2]], np.int32), np.array([[0.5]]), np.array([[np.nan]]),
                                   np.array([[1, 1]], np.int32), np.array([[-2]], np.int16)])
def test_other_train_flags_are_rejected_naming_the_file(tmp_path: Path, value: np.ndarray):
    path = _corrupt(tmp_path, train=value)
    with pytest.raises(UserError, match=r"0042.mat.*'train' must be 1 \(train\) or -1 / 0 \(test\)"):
        read_label(path)
    seq = synthetic()
    seq.train = 2
    with pytest.raises(ValueError, match="train flag"):
        write_label(tmp_path / "0043.mat", seq)


def test_truncated_frame_is_an_error_not_grey(tmp_path: Path):
    make_layout(tmp_path, nframes=3)
    ds = PennActionDataset(tmp_path)
    path = tmp_path / "frames" / "0002" / frame_name(1)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    assert cv2.imread(str(path)) is not None  # OpenCV alone decodes it, grey where data is missing
    with pytest.raises(UserError, match="000002.jpg.*truncated"):
        ds.load_frames("0002")
    assert ds.load_frames("0002", [0, 2]).shape == (2, 24, 32, 3)  # the intact frames still load
    path.write_bytes(b"")
    with pytest.raises(UserError, match="000002.jpg.*unreadable"):
        ds.load_frames("0002", [1])
