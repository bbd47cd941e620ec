"""G_R on any number of frames: windows of K (pipelines/windows.py)."""

import pytest
import torch

from structvid.pipelines.windows import fade_weights, refine_stream


def _video(t):
    x = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, 2, 2).contiguous()
    return x, torch.zeros(t, 2, 2, 2)


def _run(t, k, overlap, chunk, refine):
    x, m = _video(t)
    chunks = [(x[i : i + chunk], m[i : i + chunk]) for i in range(0, t, chunk)]
    outs = list(refine_stream(chunks, refine, k, overlap))
    return x, torch.cat([o for o, _ in outs]), [o for o, _ in outs]


@pytest.mark.parametrize("k", [4, 16])
@pytest.mark.parametrize("overlap", [0, 1, 2])
@pytest.mark.parametrize("t", [1, 3, 15, 16, 17, 31, 32, 33, 100])
@pytest.mark.parametrize("chunk", [1, 7, 200])
def test_every_frame_comes_out_once_in_order(k, overlap, t, chunk):
    # identity refiner: any frame lost, repeated, reordered or blended with the wrong weights shows up
    x, y, _ = _run(t, k, overlap, chunk, lambda f, m: (f.clone(), None))
    assert y.shape == x.shape and torch.allclose(y, x)


def test_split_windows_are_the_papers_non_overlapping_windows():
    calls = []

    def refine(f, m):
        calls.append(f[0, :, 0, 0, 0].tolist())
        return torch.full_like(f, float(len(calls))), torch.zeros(*f.shape[:2], 1, *f.shape[3:])

    _, y, _ = _run(40, 16, 0, 5, refine)
    assert calls[0] == list(range(16)) and calls[1] == list(range(16, 32))
    assert calls[2] == list(range(24, 40))  # the last window ends at the last frame
    ids = y[:, 0, 0, 0].tolist()
    assert ids == [1.0] * 16 + [2.0] * 16 + [3.0] * 8  # each frame from exactly one window


def test_overlapping_windows_cross_fade_linearly():
    def refine(f, m):  # window w outputs the constant w
        refine.n += 1
        return torch.full_like(f, float(refine.n)), None

    refine.n = 0
    _, y, _ = _run(14, 8, 2, 3, refine)  # windows [0, 8), [6, 14)
    ids = y[:, 0, 0, 0]
    w = fade_weights(2)
    assert torch.allclose(w, torch.tensor([1 / 3, 2 / 3]))
    expected = torch.tensor([1.0] * 6 + [1 + w[0].item(), 1 + w[1].item()] + [2.0] * 6)
    assert torch.allclose(ids, expected)


def test_short_video_is_padded_with_its_last_frame():
    seen = []

    def refine(f, m):
        seen.append(f[0, :, 0, 0, 0].tolist())
        return f.clone(), None

    x, y, _ = _run(5, 8, 0, 2, refine)
    assert seen == [[0, 1, 2, 3, 4, 4, 4, 4]] and torch.equal(y, x)


def test_frames_come_out_as_soon_as_their_window_is_complete():
    # streaming, not buffering: each window's frames are yielded before the next chunks are even read
    x, m = _video(64)
    read = []

    def chunks():
        for i in range(0, 64, 8):
            read.append(i + 8)  # frames read so far
            yield x[i : i + 8], m[i : i + 8]

    got = []
    for out, _ in refine_stream(chunks(), lambda f, mm: (f, None), 16, 0):
        got.append((len(out), read[-1]))
    assert got == [(16, 16), (16, 32), (16, 48), (16, 64)]


def test_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        list(refine_stream([], lambda f, m: (f, None), 8, 5))


@pytest.mark.parametrize("t, k, overlap", [(40, 16, 0), (40, 16, 2), (5, 8, 0), (64, 16, 4), (17, 16, 0)])
def test_window_starts_are_the_windows_refine_stream_runs(t, k, overlap):
    from structvid.pipelines.windows import window_starts

    starts = []

    def refine(f, m):
        starts.append(int(f[0, 0, 0, 0, 0]))
        return f, None

    _run(t, k, overlap, 3, refine)
    assert starts == window_starts(t, k, overlap)


def test_seams_are_found_where_windows_change():
    import numpy as np

    from structvid.metrics.seams import seam_report, seam_transitions

    assert np.flatnonzero(seam_transitions(40, 16, 0)).tolist() == [15, 31]
    # overlap 2: windows [0,16) [14,30) [28,40) (the last one ends at frame 40)
    assert np.flatnonzero(seam_transitions(40, 16, 2)).tolist() == [13, 15, 27, 29]
    # a video whose frames jump by 10 at each seam and by 1 inside: the ratio says so
    levels = np.cumsum([10 if s else 1 for s in seam_transitions(40, 16, 0)])
    video = np.concatenate([[0], levels]).astype(np.uint8)[:, None, None, None].repeat(3, 3)
    report = seam_report(video, video, 16, 0)
    assert report["seams"] == 2 and report["refined_ratio"] == pytest.approx(10.0)
