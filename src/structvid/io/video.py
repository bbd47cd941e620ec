"""Video reading/writing (PyAV, PIL for GIF) and panel/heatmap visualisation helpers.

Frames are uint8 RGB (T, H, W, 3) throughout. Long videos are written chunk by chunk (`VideoWriter`,
`video_files`), so memory does not grow with their length.
"""

from __future__ import annotations

import contextlib
import heapq
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
from av.codec.context import Flags
import cv2
import numpy as np
import torch
from PIL import Image

from structvid.errors import UserError
from structvid.io.files import atomic_path, output_errors

__all__ = ["write_video", "VideoWriter", "video_files", "read_video", "side_by_side"]

MP4_CRF = 18  # visually near-lossless for libx264
MP4_QSCALE = 2  # fallback mpeg4 encoder: 2 is its best practical quality


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array, got {frames.dtype} {frames.shape}")
    return frames


GIF_PREVIEW_FRAMES = 300  # PIL holds a GIF's frames until it writes them: commands make a preview of the first N


def _video_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise UserError(f"unknown video file type '{path.suffix}'; use .mp4 or .gif", path)
    return suffix


class VideoWriter:
    """Encode uint8 (T, H, W, 3) chunks into one .mp4 or .gif as they come; `close` finishes the file.

    .mp4: H.264 (libx264, crf 18) or, where FFmpeg lacks it, MPEG-4 part 2 (qscale 2); yuv420p for player
    compatibility. yuv420p needs even sizes, so an odd height/width is padded by one replicated edge
    row/column. Frames are encoded as they arrive: memory is flat in the video's length.
    .gif: PIL, loops forever, frame duration 1000/fps ms (GIF has 10 ms resolution; PIL merges identical
    consecutive frames into one longer frame). PIL writes a GIF in one go, so its frames are kept until
    `close`: at most `max_frames` of them, later ones are dropped (None: all).

    Writes `path` as it goes: `write_video` and `video_files` give it a temporary name and rename it once
    complete. OSErrors (full disk...) become UserErrors naming `name` (default: `path`).
    """

    def __init__(self, path: str | Path, fps: float = 25, max_frames: int | None = None,
                 name: str | Path | None = None) -> None:
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path
        self.kind = _video_kind(self.name)
        if not fps > 0 or not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.fps, self.max_frames = fps, max_frames
        self.count = 0  # frames given to `write` (a GIF keeps the first max_frames)
        self._shape: tuple[int, int] | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._images: list[Image.Image] = []

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frames: np.ndarray) -> None:
        frames = _check_frames(frames)
        if self._shape is None:
            self._shape = frames.shape[1:3]
        elif frames.shape[1:3] != self._shape:
            raise ValueError(f"frames are {frames.shape[1:3]}, earlier ones were {self._shape}")
        with output_errors(self.name):
            if self.kind == ".mp4":
                self._encode(frames)
            else:
                keep = len(frames) if self.max_frames is None else max(0, self.max_frames - self.count)
                # copies: a frame must not keep the caller's whole chunk alive
                # palette per frame by fast octree quantisation: PIL's default (median cut) takes ~0.4 s for a
                # 512x512 frame, octree ~10 ms, and a GIF is a preview
                self._images += [Image.fromarray(f, "RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
                                 for f in frames[:keep]]
        self.count += len(frames)

    def _encode(self, frames: np.ndarray) -> None:
        h, w = frames.shape[1:3]
        if h % 2 or w % 2:
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._container is None:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._container = av.open(str(self.path), mode="w", format="mp4")
            stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(MP4_CRF)}
            else:
                stream.codec_context.qscale = MP4_QSCALE  # fixed quantiser, not the 200 kb/s default rate
                stream.codec_context.flags |= Flags.qscale
            self._stream = stream
        for frame in frames:
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))

    def close(self) -> None:
        """Finish the file (flush the encoder / write the GIF); an error leaves it to the caller to remove."""
        if self.count == 0:
            raise ValueError(f"no frames were written to {self.name}")
        with output_errors(self.name):
            if self.kind == ".mp4":
                container, self._container = self._container, None
                if container is not None:
                    try:
                        container.mux(self._stream.encode(None))  # flush delayed frames
                    finally:
                        container.close()
            elif self._images:
                images, self._images = self._images, []
                duration = max(10, round(1000 / self.fps / 10) * 10)  # GIF delays are in 1/100 s
                images[0].save(self.path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                               duration=duration)

    def abort(self) -> None:
        """Stop without finishing the file (after an error); the caller removes it."""
        self._images = []
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - already failing: the first error is the one to report
                pass


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25) -> None:
    """Write uint8 (T, H, W, 3) frames atomically; the format follows the suffix (see `VideoWriter`)."""
    path = Path(path)
    frames = _check_frames(frames)
    _video_kind(path)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with output_errors(path), atomic_path(path) as tmp, VideoWriter(tmp, fps, name=path) as writer:
        writer.write(frames)


class VideoFiles:
    """The output files of one command, see `video_files`."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._writers: list[VideoWriter] = []

    def temp_path(self, path: str | Path) -> Path:
        """A temporary path beside `path`, renamed onto it when every file of the set is complete."""
        if Path(path).is_dir():  # found now, not by the final renames after others were renamed
            raise UserError("is a folder, not a file", path)
        with output_errors(path):
            return self._stack.enter_context(atomic_path(path))

    def video(self, path: str | Path, fps: float, max_frames: int | None = None) -> VideoWriter:
        _video_kind(Path(path))
        writer = VideoWriter(self.temp_path(path), fps, max_frames, name=path)
        self._writers.append(writer)
        return writer


@contextlib.contextmanager
def video_files() -> Iterator[VideoFiles]:
    """Write several files all or nothing: each under a temporary name beside its final one; once the block
    ends and every writer has finished, all are renamed onto their final names. On any error every temporary
    file is removed, so a failed command leaves no MP4 without its GIF and nothing that looks complete but
    is not (files of an earlier run under the same names are left as they were).

        with video_files() as out:
            mp4, gif = out.video("a.mp4", fps), out.video("a.gif", fps, max_frames=GIF_PREVIEW_FRAMES)
            for chunk in chunks:
                mp4.write(chunk); gif.write(chunk)
    """
    with contextlib.ExitStack() as stack:
        files = VideoFiles(stack)
        try:
            yield files
            for w in files._writers:  # finish every file before any is renamed
                w.close()
        except BaseException:
            for w in files._writers:
                w.abort()
            raise


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read the first video stream as uint8 (T, H, W, 3) RGB frames and its frame rate.

    Reads at most `max_frames` frames. The rate is the stream's average rate (falls back to its
    guessed/base rate). Missing, unreadable and frameless files raise UserError.
    """
    frames: list[np.ndarray] = []
    for block in iter_video(path):
        frames.extend(block)
        if max_frames is not None and len(frames) >= max_frames:
            break
    return np.stack(frames[:max_frames]), video_rate(path)


@contextlib.contextmanager
def _video_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The open container and its first video stream; a missing or unreadable file (also while decoding inside
    the block) is one UserError naming it."""
    if not path.is_file():
        raise UserError("video file not found", path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError("contains no video stream", path)
            yield container, container.streams.video[0]
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)  # FFmpeg messages repeat the path otherwise
        raise UserError(f"cannot read video ({reason})", path) from None


def iter_video(path: str | Path, chunk: int = 16) -> Iterator[np.ndarray]:
    """The first video stream as consecutive uint8 (n <= chunk, H, W, 3) RGB chunks: memory flat in the video's
    length. Missing, unreadable and frameless files raise UserError (like `read_video`)."""
    path = Path(path)
    frames: list[np.ndarray] = []
    count = 0
    with _video_stream(path) as (container, stream):
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == chunk:
                count += len(frames)
                yield np.stack(frames)
                frames = []
    if frames:
        count += len(frames)
        yield np.stack(frames)
    if count == 0:
        raise UserError("contains no frames", path)


def video_rate(path: str | Path) -> float:
    """The first video stream's frame rate (average, else guessed, else base rate)."""
    path = Path(path)
    with _video_stream(path) as (_, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise UserError("has no frame rate", path)
    return float(rate)


# --- audio: the reference video's sound on a generated video (retargeting a portrait) -------------------------

MP4_AUDIO_CODECS = ("aac", "mp3")  # stream-copied as they are; anything else is transcoded to AAC
AAC_BIT_RATE = 128_000
AAC_FRAME_SIZE = 1024  # samples per AAC frame


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)  # FFmpeg messages repeat the path otherwise


def _open_input(path: Path, what: str = "video") -> av.container.InputContainer:
    """Open a media file for reading; missing or unreadable is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"{what} file not found", path)
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"cannot read {what} ({_reason(e)})", path) from None


@contextlib.contextmanager
def _media_errors(path: Path, action: str) -> Iterator[None]:
    """FFmpeg/OS errors inside the block become one UserError naming `path` ("cannot read audio (...)")."""
    try:
        yield
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"cannot {action} ({_reason(e)})", path) from None


def has_audio(path: str | Path) -> bool:
    """Whether the file has an audio stream. Missing or unreadable files raise UserError."""
    path = Path(path)
    container = _open_input(path, "media")
    with container:
        return bool(container.streams.audio)


def _video_span(path: Path) -> tuple[float, float]:
    """(start, end) in seconds of the first video stream, from its packets' timestamps (demuxed, not decoded;
    a pass of its own, so the copying pass reads the file from its start)."""
    end = None
    with _open_input(path, "video") as container, _media_errors(path, "read video"):
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = t if end is None else max(end, t)
            if start is None:
                start = float(packet.pts * packet.time_base)
    if end is None:
        raise UserError("contains no frames", path)
    return start or 0.0, end


def _copied_packets(path: Path, container, stream, out_stream, shift: int = 0,
                    until: float | None = None) -> Iterator[tuple[float, int, av.Packet]]:
    """(time, order, packet) for each packet of `stream`, readdressed to `out_stream` without decoding.
    `shift` is added to pts/dts (stream time base); packets starting at or after `until` s are dropped."""
    with _media_errors(path, "read " + stream.type):
        for packet in container.demux(stream):
            if packet.dts is None:  # demuxer's flush packet
                continue
            if until is not None and packet.pts is not None and float(packet.pts * packet.time_base) >= until:
                break
            packet.pts = None if packet.pts is None else packet.pts + shift
            packet.dts += shift
            t = float(packet.dts * packet.time_base)
            packet.stream = out_stream
            yield t, 0 if stream.type == "video" else 1, packet


def _aac_packets(path: Path, out: Path, container, stream, out_stream, start: float,
                 until: float) -> Iterator[tuple[float, int, av.Packet]]:
    """Decode `stream`, resample to the encoder's planar float, encode AAC; audio is cut at `until` s
    (stream time, as in `_copied_packets`) and placed at `start` s of the output."""
    rate = out_stream.rate
    resampler = av.AudioResampler(format="fltp", layout=out_stream.layout.name, rate=rate,
                                  frame_size=AAC_FRAME_SIZE)
    written, limit, offset = 0, None, 0

    def encode(frame):
        with _media_errors(out, "encode audio"):
            for packet in out_stream.encode(frame):
                yield float(packet.dts * packet.time_base), 1, packet

    def decoded():
        with _media_errors(path, "read audio"):
            for frame in container.decode(stream):
                yield frame
        yield None  # flush the resampler

    for frame in decoded():
        if frame is not None and limit is None:  # first frame: where the sound starts and how much fits
            first = float(frame.pts * frame.time_base) if frame.pts is not None else start
            offset = round((first - start) * rate)
            limit = max(0, round((until - first) * rate))
        with _media_errors(path, "read audio"):
            chunks = resampler.resample(frame)
        for chunk in chunks:
            keep = min(chunk.samples, (limit or 0) - written)
            if keep <= 0:
                break
            if keep < chunk.samples:  # the part past the video's end is dropped
                data = chunk.to_ndarray()[:, :keep]  # (channels, samples), planar
                cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp",
                                                 layout=chunk.layout.name)
                cut.sample_rate = rate
                chunk = cut
            chunk.pts, chunk.time_base = offset + written, Fraction(1, rate)
            written += chunk.samples
            yield from encode(chunk)
        if limit is not None and written >= limit:
            break
    yield from encode(None)


def copy_audio(reference: str | Path, video: str | Path, out: str | Path) -> bool:
    """Put the reference's first audio stream under `video`'s picture and write the result to `out` (.mp4).

    For retargeting a portrait with a driving video (the image-to-video setting of Zhao et al., IJCV 2020,
    §4 with a reference's structure): the generated frames follow the reference in time, so its sound fits.
    The video packets are copied without re-encoding. AAC and MP3 audio is copied too; other codecs are
    transcoded to AAC (128 kb/s). The audio is trimmed to the video's duration (copied audio to the end of
    the packet that crosses it: < 1 frame, ~23 ms for AAC at 44.1 kHz). Audio and video keep their positions
    relative to their streams' starts.

    Returns True when audio was added; False when the reference has none (then `video` is copied unchanged to
    `out`). `out` is written under a temporary name and renamed once complete; errors are UserErrors naming
    the file that caused them.
    """
    reference, video, out = Path(reference), Path(video), Path(out)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"audio needs an .mp4 output, not '{out.suffix}'", out)
    if out.is_dir():
        raise UserError("is a folder, not a file", out)
    ref = _open_input(reference, "reference")
    with ref:
        if not ref.streams.audio:
            if not (out.exists() and video.exists() and out.samefile(video)):
                if not video.is_file():
                    raise UserError("video file not found", video)
                with output_errors(out), atomic_path(out) as tmp:
                    shutil.copyfile(video, tmp)
            return False
        src = _open_input(video, "video")
        with src, output_errors(out), atomic_path(out) as tmp:
            if not src.streams.video:
                raise UserError("contains no video stream", video)
            vin, ain = src.streams.video[0], ref.streams.audio[0]
            v_start, v_end = _video_span(video)
            a_start = float(ain.start_time * ain.time_base) if ain.start_time is not None else 0.0
            until = a_start + (v_end - v_start)  # reference time at which the video ends
            with _media_errors(out, "write video"), av.open(str(tmp), mode="w", format="mp4") as dst:
                vout = dst.add_stream_from_template(vin)
                video_packets = _copied_packets(video, src, vin, vout)
                if ain.codec_context.name in MP4_AUDIO_CODECS:
                    aout = dst.add_stream_from_template(ain)
                    shift = round((v_start - a_start) / ain.time_base)  # reference start -> video start
                    audio_packets = _copied_packets(reference, ref, ain, aout, shift, until)
                else:
                    rate = ain.codec_context.sample_rate or 44100
                    rate = rate if rate <= 96000 else 48000  # AAC's highest standard rate
                    layout = "mono" if ain.codec_context.channels == 1 else "stereo"
                    aout = dst.add_stream("aac", rate=rate, layout=layout)
                    aout.bit_rate = AAC_BIT_RATE
                    audio_packets = _aac_packets(reference, out, ref, ain, aout, v_start, until)
                # interleave by time, so the muxer need not hold one stream's packets while it waits for the other
                for _, _, packet in heapq.merge(video_packets, audio_packets, key=lambda p: p[:2]):
                    dst.mux(packet)
    return True


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h == height:
        return img
    width = max(1, round(w * height / h))
    # nearest keeps small generated frames crisp when enlarged; area averages when shrinking
    interp = cv2.INTER_NEAREST if height > h else cv2.INTER_AREA
    return cv2.resize(img, (width, height), interpolation=interp)


def _caption(text: str, width: int, height: int) -> np.ndarray:
    strip = np.zeros((height, width, 3), np.uint8)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, height // 24)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thick)
    # font scale: fill ~60% of the strip height, shrink further if the label is too wide
    scale = min(0.6 * height / max(th, 1), 0.95 * width / max(tw, 1))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(strip, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return strip


def side_by_side(
    panels: Sequence[np.ndarray], labels: Sequence[str], scale: int = 1, gap: int = 2
) -> np.ndarray:
    """Join panels left to right under caption strips: uint8 (T, H', W', 3).

    Each panel is uint8 (T, H, W, 3) or a still (H, W, 3) (or T=1) repeated over time; all clips
    with T > 1 must share T. Panels are resized (aspect kept) to the largest panel height times
    `scale`, with `gap` black columns between them.
    """
    if len(panels) != len(labels) or not panels:
        raise ValueError(f"need one label per panel, got {len(panels)} panels and {len(labels)} labels")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    clips = [np.asarray(p)[None] if np.asarray(p).ndim == 3 else np.asarray(p) for p in panels]
    for c in clips:
        _check_frames(c)
    lengths = {len(c) for c in clips if len(c) > 1}
    if len(lengths) > 1:
        raise ValueError(f"panels have different frame counts: {sorted(lengths)}")
    t = lengths.pop() if lengths else 1
    height = max(c.shape[1] for c in clips) * scale
    cap_h = max(12, height // 8)

    columns = []
    for clip, label in zip(clips, labels):
        frames = np.stack([_resize(f, height) for f in clip])
        frames = np.broadcast_to(frames, (t, *frames.shape[1:]))
        cap = np.broadcast_to(_caption(label, frames.shape[2], cap_h), (t, cap_h, frames.shape[2], 3))
        columns.append(np.concatenate([cap, frames], axis=1))
        columns.append(np.zeros((t, height + cap_h, gap, 3), np.uint8))
    return np.ascontiguousarray(np.concatenate(columns[:-1], axis=2))
