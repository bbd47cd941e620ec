"""G_R on videos of any length (§6): refine consecutive windows of K frames, streaming.

G_R sees clips of exactly K frames (16 for bodies, 32 for faces). A longer video is cut into windows:

- `overlap=0` (the paper's way): non-overlapping windows [0, K), [K, 2K), ...; when T is not a multiple of
  K the last window is the last K frames [T-K, T), of which only the frames not yet refined are kept.
- `overlap=O` (our option, 0 < O <= K/2): windows every K-O frames; on the O frames two windows share, the
  output cross-fades linearly from the earlier window to the later one, so no seam is a hard cut.

A video shorter than K is padded by repeating its last frame (and motion map) and cut back afterwards.
Every frame comes out exactly once, in order. At most K + O frames are held at a time, so memory does not
grow with the video's length.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

# (coarse clip (1, K, 3, S, S), motions (1, K, C, S, S)) -> (refined clip (1, K, 3, S, S), mask (1, K, 1, S, S) or None)
RefineFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]


def check_overlap(k: int, overlap: int) -> None:
    if not 0 <= overlap <= k // 2:
        raise ValueError(f"window overlap must be in 0..K/2 = {k // 2}, got {overlap}")


def window_starts(total: int, k: int, overlap: int = 0) -> list[int]:
    """Where `refine_stream`'s windows start for a video of `total` frames (the last may be [total - K, total))."""
    check_overlap(k, overlap)
    if total <= k:
        return [0] if total else []
    starts = list(range(0, total - k + 1, k - overlap))
    if starts[-1] + k < total:
        starts.append(total - k)
    return starts


def fade_weights(overlap: int, device: torch.device | None = None) -> Tensor:
    """Weight of the later window on the O shared frames: (i + 1) / (O + 1), i = 0..O-1 (never 0 or 1)."""
    return torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)


def _blend(old: Tensor, new: Tensor, weights: Tensor) -> Tensor:
    w = weights.to(new.dtype).view(-1, *([1] * (new.dim() - 1)))
    return (1 - w) * old + w * new


def refine_stream(chunks: Iterable[tuple[Tensor, Tensor]], refine: RefineFn, k: int,
                  overlap: int = 0) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Refine a stream of (coarse frames (T_i, 3, S, S), motions (T_i, C, S, S)) chunks window by window.

    Yields (refined frames (n, 3, S, S), masks (n, 1, S, S) or None) chunks whose lengths add up to the
    input's, in order. `refine` is G_R applied to one window (see `RefineFn`).
    """
    check_overlap(k, overlap)
    stride = k - overlap
    recent: deque[tuple[Tensor, Tensor]] = deque(maxlen=k)  # the last K frames received
    total = 0  # frames received
    start = 0  # where the next regular window starts
    emitted = 0  # frames yielded
    tail: tuple[Tensor, Tensor | None] | None = None  # refined frames [emitted, emitted + O) of the last window

    def run() -> tuple[Tensor, Tensor | None]:
        f = torch.stack([x for x, _ in recent])
        m = torch.stack([y for _, y in recent])
        if len(f) < k:  # a video shorter than K: repeat its last frame
            pad = k - len(f)
            f, m = torch.cat([f, f[-1:].expand(pad, *f.shape[1:])]), torch.cat([m, m[-1:].expand(pad, *m.shape[1:])])
        out, mask = refine(f[None], m[None])
        return out[0], None if mask is None else mask[0]

    def merge(out: Tensor, mask: Tensor | None, first: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield a window's frames from absolute index `emitted` on (`first` = the window's start index):
        those the tail also covers cross-faded with it, the rest as they are."""
        nonlocal emitted, tail
        skip = emitted - first  # frames of this window already yielded
        out, mask = out[skip:], None if mask is None else mask[skip:]
        if tail is not None:
            n = len(tail[0])
            w = fade_weights(n, out.device)
            yield _blend(tail[0], out[:n], w), None if mask is None or tail[1] is None else _blend(tail[1], mask[:n], w)
            emitted += n
            out, mask = out[n:], None if mask is None else mask[n:]
            tail = None
        yield out, mask
        emitted += len(out)

    for chunk_frames, chunk_motions in chunks:
        for f, m in zip(chunk_frames.unbind(0), chunk_motions.unbind(0)):
            recent.append((f, m))
            total += 1
            if total == start + k:  # a regular window [start, start + K)
                out, mask = run()
                keep = k - overlap
                yield from merge(out[:keep], None if mask is None else mask[:keep], start)
                if overlap:
                    tail = (out[keep:], None if mask is None else mask[keep:])
                start += stride
    if total == 0:
        return
    if emitted + (len(tail[0]) if tail is not None else 0) == total:  # the last window ended at the last frame
        if tail is not None:
            yield tail
        return
    # frames no regular window reached: one last window on the last K frames (or the whole, padded, video)
    out, mask = run()
    first = max(total - k, 0)
    n = min(total, k)
    yield from merge(out[:n], None if mask is None else mask[:n], first)
