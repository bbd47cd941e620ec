"""copy_audio / has_audio: the reference's sound under a generated video (portrait retargeting)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from structvid.errors import UserError
from structvid.io.video import copy_audio, has_audio, write_video

FRAMES, FPS = 40, 25  # 1.6 s, shorter than every reference


@pytest.fixture()
def faces(shared_data) -> Path:
    return shared_data / "faces"


@pytest.fixture()
def silent(tmp_path) -> Path:
    path = tmp_path / "silent.mp4"
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 256, (FRAMES, 64, 48, 3), dtype=np.uint8), fps=FPS)
    return path


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _seconds(stream) -> float:
    return float(stream.duration * stream.time_base)


def _samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)  # (channels, samples)


@pytest.mark.parametrize("name", ["d11.mp4", "d18.mp4"])
def test_copy_audio_adds_the_reference_sound(faces, silent, tmp_path, name):
    out = tmp_path / "out.mp4"
    assert copy_audio(faces / name, silent, out) is True
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert audio.codec_context.name == "aac"  # aac is stream-copied, not transcoded
        assert sum(1 for _ in c.decode(video)) == FRAMES
        v, a = _seconds(video), _seconds(audio)
    assert v == pytest.approx(FRAMES / FPS)
    assert v - 0.1 <= a <= v + 0.1  # trimmed to the video, not cut short
    assert _video_packets(out) == _video_packets(silent)  # video packets copied, not re-encoded
    got, ref = _samples(out), _samples(faces / name)
    np.testing.assert_array_equal(got, ref[:, : got.shape[1]])  # the reference's first samples, bit for bit
    assert not any(p.name.endswith(".tmp.mp4") for p in tmp_path.iterdir())


def test_reference_without_audio_copies_the_video(faces, silent, tmp_path):
    out = tmp_path / "out.mp4"
    assert copy_audio(faces / "d0.mp4", silent, out) is False
    with av.open(str(out)) as c:
        assert not c.streams.audio and len(c.streams.video) == 1
    assert out.read_bytes() == silent.read_bytes()


def test_other_codecs_are_transcoded_to_aac(silent, tmp_path):
    ref, rate = tmp_path / "tone.wav", 22050
    t = np.arange(3 * rate) / rate  # 3 s of 440 Hz
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None]  # (1, samples) mono s16
    with av.open(str(ref), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i in range(0, tone.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, i:i + 1024]), format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = rate, i, Fraction(1, rate)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    assert copy_audio(ref, silent, out) is True
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.rate == rate
        assert _seconds(audio) <= _seconds(c.streams.video[0]) + 0.1
    samples = _samples(out)
    assert samples.shape[1] <= (FRAMES / FPS + 0.1) * rate
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)  # the tone, not silence


def test_unreadable_or_missing_reference_is_a_user_error(silent, tmp_path):
    bad, out = tmp_path / "bad.mp4", tmp_path / "out.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    for ref in (bad, tmp_path / "missing.mp4"):
        with pytest.raises(UserError) as e:
            copy_audio(ref, silent, out)
        assert e.value.path == str(ref)
    with pytest.raises(UserError, match="bad.mp4"):
        has_audio(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "silent.mp4"]  # nothing left behind


def test_missing_video_and_wrong_output_type(faces, tmp_path, silent):
    with pytest.raises(UserError) as e:
        copy_audio(faces / "d11.mp4", tmp_path / "none.mp4", tmp_path / "out.mp4")
    assert e.value.path == str(tmp_path / "none.mp4")
    with pytest.raises(UserError, match="mp4"):
        copy_audio(faces / "d11.mp4", silent, tmp_path / "out.gif")


def test_has_audio(faces, silent):
    assert has_audio(faces / "d11.mp4") and has_audio(faces / "d18.mp4")
    assert not has_audio(faces / "d0.mp4") and not has_audio(silent)
