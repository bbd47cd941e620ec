"""Readers report a cut-short video as an error naming the file instead of silently using fewer frames."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from structvid.data.human36m import make_h36m_fixture
from structvid.errors import UserError
from structvid.io.video import read_video


def _faststart(src: Path, dst: Path) -> None:
    """Remux `src` with its index (moov) before the data, as many published .mp4 files are."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_truncated_h36m_video_is_an_error(tmp_path: Path) -> None:
    ds = make_h36m_fixture(tmp_path, ("S5",), ("Posing",), frames=30, size=(40, 48))
    item = ds.items[0]
    video = item.video_path
    assert len(ds.load_clip(item, size=16).frames) == 30
    # index at the end (as write_video leaves it): a cut file no longer opens at all
    original = video.read_bytes()
    video.write_bytes(original[: int(len(original) * 0.6)])
    with pytest.raises(UserError, match="cannot open") as err:
        ds.load_clip(item, size=16)
    assert err.value.path == str(video)
    # index first: the cut file opens, and cv2 used to return the frames before the cut without a word
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(original)
    _faststart(whole, video)
    assert len(ds.load_clip(item, size=16).frames) == 30
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(UserError, match=r"stops after \d+ of its 30 frames \(truncated") as err:
        ds.load_clip(item, size=16)
    assert err.value.path == str(video)
    assert len(ds.load_clip(item, size=16, max_frames=3).frames) == 3  # frames before the cut still load
    with pytest.raises(UserError, match="cannot read video") as err:  # PyAV's reader already refused it
        read_video(video)
    assert err.value.path == str(video)
