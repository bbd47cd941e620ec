"""Synthetic "puppet" pose videos written in the Penn Action layout (a stand-in for §7.1's Penn Action).

A 2D articulated figure with the 13 Penn Action joints (shaded capsule limbs, patterned torso, head disc)
moves in front of a random static textured background seen by a static camera, as the paper's task
requires (§1: "a fixed camera viewpoint, which means that the background is always static"). Motions come from
periodic procedural actions or from real Penn Action joint sequences. The output is a folder that
`PennActionDataset` reads like the real dataset (frames/NNNN/000001.jpg + labels/NNNN.mat).

Video i only uses `np.random.default_rng([seed, i])`, so results do not depend on workers or order.
"""

from __future__ import annotations

import colorsys
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from tempfile import TemporaryDirectory

import cv2
import numpy as np

from structvid.data.penn_action import PennActionDataset, PennSequence, frame_name, read_label, write_label
from structvid.structure.skeleton import (
    HEAD, L_ANKLE, L_ELBOW, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, MIRROR_ORDER, NUM_JOINTS, R_ANKLE, R_ELBOW, R_HIP,
    R_KNEE, R_SHOULDER, R_WRIST,
)
from structvid.errors import UserError
from structvid.io.files import atomic_dir

PROCEDURAL_ACTIONS: tuple[str, ...] = ("jumping_jacks", "waving", "squats", "arm_circles", "walking", "swinging")
SOURCES = ("procedural", "penn", "mixed")
MARKER = "puppet.json"  # written into every generated dataset; only such folders may be overwritten
JPEG_QUALITY = 95

# Yaw of the body seen by the camera. front: faces the camera (person's left on image right);
# left / right: faces image left / right.
_VIEWS = {"front": 0.0, "back": np.pi, "left": -np.pi / 2, "right": np.pi / 2}
# Sizes are in units of the torso length (mid-shoulders to mid-hips); the fit reserves the largest.
_HEAD_RADIUS = (0.30, 0.40)
_LIMB_WIDTH = (0.22, 0.36)
_MARGIN = max(_HEAD_RADIUS[1], _LIMB_WIDTH[1] / 2) + 0.05
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


@dataclass
class Motion:
    """A joint sequence in a normalized frame (y down, arbitrary units) plus what its label needs."""

    joints: np.ndarray  # (T, 13, 2) float64, every joint has a finite position (for drawing)
    visibility: np.ndarray  # (T, 13) uint8, written to the label
    action: str
    pose: str  # view: front / back / left / right
    train: int
    unit: float  # torso length in the same units: the scale of limb widths and head size


# ----------------------------------------------------------------------------------------------------
# Procedural motion: 3D forward kinematics of a stick figure, orthographic camera with a yaw.


def _direction(abd: np.ndarray, flex: np.ndarray, side: float) -> np.ndarray:
    """Unit limb direction (T, 3): y down, z towards the body's front; abd swings out sideways
    (towards the `side` = +1 left / -1 right), flex swings forwards; (0, 0) hangs straight down."""
    return np.stack([side * np.sin(abd), np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)], -1)


def _action_tracks(action: str, rng: np.random.Generator, num_frames: int) -> dict[str, np.ndarray]:
    """Joint angles (radians) per frame for one periodic action; index 0 of pairs is the left side."""
    t = np.arange(num_frames, dtype=np.float64)
    period = rng.uniform(14.0, 32.0)
    phi = 2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)
    a = rng.uniform(0.75, 1.2)  # amplitude
    s = (1 - np.cos(phi)) / 2  # 0..1..0 once per period
    zero = np.zeros(num_frames)
    k = {
        "roll": zero.copy(), "pitch": zero.copy(), "nod": zero.copy(), "jump": zero.copy(), "sway": zero.copy(),
        "sh_abd": np.full((2, num_frames), 0.12), "sh_flex": np.zeros((2, num_frames)),
        "el_abd": np.zeros((2, num_frames)), "el_flex": np.full((2, num_frames), 0.15),
        "hip_abd": np.full((2, num_frames), 0.05), "hip_flex": np.zeros((2, num_frames)),
        "kn_abd": np.zeros((2, num_frames)), "kn_flex": np.zeros((2, num_frames)),
    }
    if action == "jumping_jacks":
        k["sh_abd"][:] = 0.15 + np.minimum(2.6 * a, 2.9) * s
        k["el_abd"][:] = 0.25 * s
        k["hip_abd"][:] = 0.04 + 0.32 * a * s
        k["kn_abd"][:] = -0.06 * s
        k["jump"] = 0.06 * a * np.abs(np.sin(phi))
    elif action == "waving":
        side = int(rng.integers(2))
        k["sh_abd"][side] = rng.uniform(1.9, 2.5) + 0.08 * np.sin(phi)
        k["el_abd"][side] = 0.45 + 0.5 * a * np.sin(phi)
        k["el_flex"][side] = 0.0
        k["roll"] = 0.04 * np.sin(phi)
    elif action == "squats":
        depth = a * s
        k["hip_flex"][:] = 1.45 * depth
        k["kn_flex"][:] = -0.4 * depth - k["hip_flex"]  # shins lean forwards a little
        k["hip_abd"][:] = 0.06 + 0.15 * depth  # knees out
        k["sh_flex"][:] = 1.45 * depth  # arms forwards for balance
        k["pitch"] = 0.35 * depth
    elif action == "arm_circles":
        direction = rng.choice([-1.0, 1.0])
        if rng.random() < 0.5:  # windmill: full turns, arms in or out of phase
            offset = rng.choice([0.0, np.pi])
            k["sh_abd"][0] = direction * phi
            k["sh_abd"][1] = direction * phi + offset
            k["el_flex"][:] = 0.05
        else:  # small circles with the arms held out
            r = 0.35 * a
            k["sh_abd"][:] = np.pi / 2 + r * np.sin(direction * phi)
            k["sh_flex"][:] = r * np.cos(direction * phi)
    elif action == "walking":  # in place: the pelvis follows the feet vertically only
        swing = 0.45 * a * np.sin(phi)
        k["hip_flex"][0], k["hip_flex"][1] = swing, -swing
        k["kn_flex"][0] = -0.9 * a * np.clip(np.sin(phi + 0.8), 0, None)
        k["kn_flex"][1] = -0.9 * a * np.clip(np.sin(phi + 0.8 + np.pi), 0, None)
        k["sh_flex"][0], k["sh_flex"][1] = -0.8 * swing, 0.8 * swing
        k["el_flex"][:] = 0.25 + 0.6 * np.clip(k["sh_flex"], 0, None)  # bend more on the forward swing
    elif action == "swinging":  # a two-handed swing (golf / bat) in front of the body
        theta = 1.3 * a * np.sin(phi) + rng.uniform(-0.2, 0.2)
        k["sh_abd"][0], k["sh_abd"][1] = theta - 0.3, -theta - 0.3  # hands together, swinging sideways
        k["sh_flex"][:] = 0.35
        k["el_flex"][:] = 0.1
        k["roll"] = 0.12 * np.sin(phi)
        k["pitch"] = np.full(num_frames, 0.3)
        k["hip_abd"][:] = 0.18
        k["hip_flex"][:] = 0.25
        k["kn_flex"][:] = -0.45
        k["sway"] = 0.04 * np.sin(phi)
    else:
        raise ValueError(f"unknown procedural action {action!r}; expected one of {PROCEDURAL_ACTIONS}")
    # Slow wobble on every angle so no two repetitions are identical.
    for key in ("sh_abd", "sh_flex", "el_abd", "el_flex", "hip_abd", "kn_flex"):
        wobble = 0.04 * np.sin(2 * np.pi * t / rng.uniform(20, 60, size=(2, 1)) + rng.uniform(0, 2 * np.pi, (2, 1)))
        k[key] = k[key] + wobble
    k["nod"] = k["nod"] + 0.08 * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 2 * np.pi))
    return k


def procedural_motion(rng: np.random.Generator, num_frames: int, action: str | None = None) -> Motion:
    """A periodic action (one of PROCEDURAL_ACTIONS, random when None) with random period, phase,
    amplitude, body proportions and view. Joints are in body units (standing height about 1, feet on y=0)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if action is None:
        action = str(rng.choice(PROCEDURAL_ACTIONS))
    torso = rng.uniform(0.27, 0.33)
    body = dict(torso=torso, neck=rng.uniform(0.3, 0.4) * torso, shoulder=rng.uniform(0.3, 0.38) * torso,
                hip=rng.uniform(0.2, 0.28) * torso, upper_arm=rng.uniform(0.16, 0.19),
                forearm=rng.uniform(0.14, 0.17), thigh=rng.uniform(0.22, 0.26), shin=rng.uniform(0.21, 0.25))
    k = _action_tracks(action, rng, num_frames)
    frontal = action in ("jumping_jacks", "waving", "arm_circles", "swinging")
    if frontal or (action == "squats" and rng.random() < 0.5):
        view = str(rng.choice(["front", "back"]))
    else:
        view = str(rng.choice(["left", "right", "front"], p=[0.4, 0.4, 0.2]))
    yaw = _VIEWS[view] + rng.uniform(-0.25, 0.25)

    T = num_frames
    j = np.zeros((T, NUM_JOINTS, 3))
    up = -_direction(k["roll"], k["pitch"], 1.0)  # torso axis, pointing from pelvis to neck
    lateral = np.stack([np.cos(k["roll"]), np.sin(k["roll"]), np.zeros(T)], -1)  # towards the left
    neck = body["torso"] * up
    head_up = -_direction(k["roll"] * 1.5, k["pitch"] + k["nod"], 1.0)
    j[:, HEAD] = neck + body["neck"] * head_up
    for side, (sh, el, wr, hp, kn, an) in zip((1.0, -1.0), ((L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE),
                                                             (R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE))):
        i = 0 if side > 0 else 1
        j[:, sh] = neck + side * body["shoulder"] * lateral
        j[:, el] = j[:, sh] + body["upper_arm"] * _direction(k["sh_abd"][i], k["sh_flex"][i], side)
        j[:, wr] = j[:, el] + body["forearm"] * _direction(k["sh_abd"][i] + k["el_abd"][i],
                                                           k["sh_flex"][i] + k["el_flex"][i], side)
        j[:, hp] = side * body["hip"] * lateral
        j[:, kn] = j[:, hp] + body["thigh"] * _direction(k["hip_abd"][i], k["hip_flex"][i], side)
        j[:, an] = j[:, kn] + body["shin"] * _direction(k["hip_abd"][i] + k["kn_abd"][i],
                                                        k["hip_flex"][i] + k["kn_flex"][i], side)
    # Stand on the ground (y = 0 at the lowest ankle), lifted while jumping.
    lift = j[:, [L_ANKLE, R_ANKLE], 1].max(1) + k["jump"]
    j[:, :, 1] -= lift[:, None]
    j[:, :, 0] += k["sway"][:, None]
    # Orthographic camera turned by `yaw` about the vertical axis.
    xy = np.stack([j[..., 0] * np.cos(yaw) + j[..., 2] * np.sin(yaw), j[..., 1]], -1)
    return Motion(joints=xy, visibility=np.ones((T, NUM_JOINTS), np.uint8), action=action, pose=view, train=1,
                  unit=float(body["torso"]))


# ----------------------------------------------------------------------------------------------------
# Real Penn Action motion.


def _fill_joints(x: np.ndarray, y: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """(T, 13, 2) drawable positions: invisible joints interpolated in time between visible frames (held at
    the ends); joints never visible keep their raw coordinates when finite, else take their left/right
    partner's track or the frame's centroid."""
    T = x.shape[0]
    raw = np.stack([x, y], -1).astype(np.float64)
    out = np.full_like(raw, np.nan)
    t = np.arange(T)
    for jt in range(NUM_JOINTS):
        seen = np.flatnonzero(vis[:, jt] > 0)
        if seen.size:
            out[:, jt, 0] = np.interp(t, seen, raw[seen, jt, 0])
            out[:, jt, 1] = np.interp(t, seen, raw[seen, jt, 1])
        elif np.isfinite(raw[:, jt]).all():
            out[:, jt] = raw[:, jt]
    for jt, partner in enumerate(MIRROR_ORDER):  # an unpaired joint is its own partner
        if np.isnan(out[:, jt]).any() and partner != jt and not np.isnan(out[:, partner]).any():
            out[:, jt] = out[:, partner]
    known = ~np.isnan(out)
    centroid = np.nansum(out, axis=1) / np.maximum(known.sum(1), 1)  # 0 where nothing is known at all
    return np.where(known, out, centroid[:, None, :])


def penn_motion(seq: PennSequence) -> Motion:
    """A real Penn Action joint sequence, normalized by one fixed box around all its frames (so the
    person moves within the frame) to [-0.5, 0.5] along its longer side, aspect ratio kept.

    Invisible joints are interpolated for drawing; the returned visibility is the source's.
    """
    filled = _fill_joints(seq.x, seq.y, seq.visibility)
    lo, hi = filled.min((0, 1)), filled.max((0, 1))
    side = float((hi - lo).max()) or 1.0
    joints = (filled - (lo + hi) / 2) / side
    mid_sh = joints[:, [L_SHOULDER, R_SHOULDER]].mean(1)
    mid_hip = joints[:, [L_HIP, R_HIP]].mean(1)
    # Limb widths follow the torso, which is measured robustly over time and bounded for odd labels.
    unit = float(np.clip(np.median(np.linalg.norm(mid_sh - mid_hip, axis=-1)), 0.12, 0.5))
    return Motion(joints=joints, visibility=seq.visibility.astype(np.uint8).copy(), action=seq.action,
                  pose=seq.pose, train=int(seq.train), unit=unit)


def fit_to_frame(joints: np.ndarray, unit: float, size: int, rng: np.random.Generator | None = None,
                 fill: tuple[float, float] = (0.75, 1.0)) -> tuple[np.ndarray, float]:
    """Place normalized joints (T, 13, 2) with one fixed scale and offset in a size x size frame.

    The union box of all frames plus a margin for the head and limb widths fits inside the frame, so the
    whole figure stays visible in every frame. A random scale (fraction `fill` of the largest) and
    position are drawn from `rng` (centred and largest without it). Returns pixel joints and the
    torso length in pixels.
    """
    lo, hi = joints.min((0, 1)), joints.max((0, 1))
    margin = _MARGIN * unit
    extent = (hi - lo) + 2 * margin
    pad = 1.0
    scale = (size - 1 - 2 * pad) / max(float(extent.max()), 1e-9)
    u = np.full(2, 0.5)
    if rng is not None:
        scale *= rng.uniform(*fill)
        u = rng.uniform(0, 1, 2)
    slack = np.maximum(size - 1 - 2 * pad - extent * scale, 0)
    pixels = (joints - lo + margin) * scale + pad + slack * u
    return pixels, unit * scale


# ----------------------------------------------------------------------------------------------------
# Appearance and rendering.

_SKIN = np.array([(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30)])
_HAIR = np.array([(20, 16, 14), (60, 40, 25), (110, 70, 35), (200, 160, 90), (150, 60, 30), (160, 160, 160)])
_PATTERNS = ("plain", "hstripes", "vstripes", "diagonal", "checks", "dots")


@dataclass
class Look:
    """Per-video appearance; colours are RGB, sizes are pixels."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    shirt2: tuple[int, int, int]  # the pattern's second colour
    pants: tuple[int, int, int]
    shoes: tuple[int, int, int]
    pattern: str  # one of plain, hstripes, vstripes, diagonal, checks, dots
    period: int  # pattern period in texture pixels (16 across the torso)
    long_sleeves: bool
    head_radius: float
    arm_width: float
    leg_width: float
    torso_width: float  # minimum torso width (seen from the side the shoulders overlap)

    @property
    def margin(self) -> float:
        """How far the drawn figure reaches beyond its joints, in pixels."""
        return max(self.head_radius, self.arm_width / 2, self.leg_width / 2) + 1.0


def _vivid(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, palette: np.ndarray, amount: float) -> tuple[int, int, int]:
    c = palette[rng.integers(len(palette))] + rng.uniform(-amount, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def random_look(rng: np.random.Generator, unit_px: float) -> Look:
    """A random appearance for a figure whose torso is `unit_px` pixels long."""
    limb = rng.uniform(*_LIMB_WIDTH)
    return Look(
        skin=_jitter(rng, _SKIN, 12), hair=_jitter(rng, _HAIR, 15), shirt=_vivid(rng), shirt2=_vivid(rng),
        pants=_vivid(rng), shoes=_jitter(rng, _HAIR, 30), pattern=str(rng.choice(_PATTERNS)),
        period=int(rng.integers(3, 7)), long_sleeves=bool(rng.random() < 0.5),
        head_radius=rng.uniform(*_HEAD_RADIUS) * unit_px, arm_width=limb * 0.9 * unit_px,
        leg_width=limb * 1.1 * unit_px, torso_width=rng.uniform(0.45, 0.6) * unit_px,
    )


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A static textured scene (size, size, 3) uint8: gradient, smooth noise, a floor, random shapes."""
    c1, c2 = rng.uniform(0, 255, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    g = (xs * np.cos(angle) + ys * np.sin(angle))
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-9)
    img = c1 + (c2 - c1) * g[..., None]
    if rng.random() < 0.7:  # a floor below a horizon
        horizon = int(rng.uniform(0.55, 0.85) * size)
        floor = rng.uniform(0, 255, 3) * np.linspace(0.8, 1.1, size - horizon)[:, None]
        img[horizon:] = 0.3 * img[horizon:] + 0.7 * floor[:, None, :]
    for _ in range(int(rng.integers(2, 9))):  # shapes: furniture, windows, posters
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p = rng.uniform(-0.1, 1.1, 2) * size
        extent = rng.uniform(0.05, 0.35, 2) * size
        kind = rng.integers(3)
        layer = img.copy()
        if kind == 0:
            cv2.rectangle(layer, (int(p[0]), int(p[1])), (int(p[0] + extent[0]), int(p[1] + extent[1])), color, -1)
        elif kind == 1:
            cv2.circle(layer, (int(p[0]), int(p[1])), int(extent[0] / 2) + 1, color, -1, _AA)
        else:
            q = p + rng.uniform(-0.5, 0.5, 2) * size
            cv2.line(layer, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, int(rng.integers(1, 4)), _AA)
        alpha = rng.uniform(0.4, 1.0)
        img = (1 - alpha) * img + alpha * layer
    cells = int(rng.integers(3, 9))  # low-frequency blotches plus fine grain
    blotches = cv2.resize(rng.normal(0, 1, (cells, cells, 3)).astype(np.float32), (size, size),
                          interpolation=cv2.INTER_CUBIC)
    img = img + rng.uniform(8, 30) * blotches + rng.normal(0, rng.uniform(1, 5), (size, size, 1))
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shade(color: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """Darker (f < 1) or lighter (f > 1, blended towards white) version of a colour."""
    c = np.asarray(color, np.float64)
    c = c * f if f <= 1 else c + (255 - c) * (f - 1)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _texture(look: Look, n: int = 16) -> np.ndarray:
    """(n, n, 3) uint8 clothing texture across the torso (u: left to right, v: top to bottom), shaded
    lighter in the middle like a cylinder lit from the front."""
    v, u = np.mgrid[0:n, 0:n]
    p = look.period
    second = {
        "plain": np.zeros((n, n), bool), "hstripes": (v // p) % 2 == 1, "vstripes": (u // p) % 2 == 1,
        "diagonal": ((u + v) // p) % 2 == 1, "checks": ((u // p) + (v // p)) % 2 == 1,
        "dots": ((u % p) - p / 2) ** 2 + ((v % p) - p / 2) ** 2 < (p / 3) ** 2,
    }[look.pattern]
    tex = np.where(second[..., None], np.asarray(look.shirt2, np.float64), np.asarray(look.shirt, np.float64))
    shade = 0.7 + 0.45 * np.cos(np.pi * (u / (n - 1) - 0.5)) ** 2
    return np.clip(tex * shade[..., None], 0, 255).astype(np.uint8)


class _Painter:
    """Draws one look on frames; precomputes colours so that per-frame work is a few cv2 calls."""

    def __init__(self, look: Look) -> None:
        self.look = look
        self.tex = _texture(look)
        n = self.tex.shape[0]
        self.tex_pts = np.float32([[0, 0], [n - 1, 0], [0, n - 1]])
        sleeve = look.shirt if look.long_sleeves else look.skin
        self.arm_w = max(int(round(look.arm_width)), 1)
        self.leg_w = max(int(round(look.leg_width)), 1)
        # (joint a, joint b, colour, width) per capsule, back-to-front: legs, then arms over the torso.
        self.legs = [(a, b, look.pants, self.leg_w) for a, b in ((R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
                                                                 (L_HIP, L_KNEE), (L_KNEE, L_ANKLE))]
        self.arms = [(R_SHOULDER, R_ELBOW, look.shirt, self.arm_w), (R_ELBOW, R_WRIST, sleeve, self.arm_w),
                     (L_SHOULDER, L_ELBOW, look.shirt, self.arm_w), (L_ELBOW, L_WRIST, sleeve, self.arm_w)]
        self.shades = {c: (_shade(c, 0.55), c, _shade(c, 1.35)) for c in
                       {look.pants, look.shirt, sleeve, look.skin, look.shoes, look.hair}}

    def capsule(self, img: np.ndarray, p: tuple[int, int], q: tuple[int, int], color: tuple, width: int) -> None:
        # Dark rim, body colour, light centre stripe: reads as a shaded cylinder even at 64 px.
        dark, base, light = self.shades[color]
        cv2.line(img, p, q, dark, width, _AA, _SHIFT)
        if width >= 3:
            cv2.line(img, p, q, base, max(width - 2, 1), _AA, _SHIFT)
            cv2.line(img, p, q, light, max(width // 3, 1), _AA, _SHIFT)

    def torso(self, img: np.ndarray, j: np.ndarray) -> None:
        look = self.look
        top = (j[L_SHOULDER] + j[R_SHOULDER]) / 2
        bottom = (j[L_HIP] + j[R_HIP]) / 2
        axis = bottom - top
        length = float(np.hypot(*axis))
        axis = axis / length if length > 1e-6 else np.array([0.0, 1.0])
        normal = np.array([-axis[1], axis[0]])  # towards image left when upright
        # Half widths: the shoulders' and hips' spread across the axis, never thinner than a side view torso.
        hw_top = max(abs(float(normal @ (j[R_SHOULDER] - j[L_SHOULDER]))) / 2 + look.arm_width / 2,
                     look.torso_width / 2)
        hw_bot = max(abs(float(normal @ (j[R_HIP] - j[L_HIP]))) / 2 + look.leg_width / 2, look.torso_width / 2)
        # Texture u runs from the figure's left shoulder to its right one, so it turns with the body.
        sign = 1.0 if normal @ (j[L_SHOULDER] - j[R_SHOULDER]) >= 0 else -1.0
        quad = np.array([top + sign * hw_top * normal, top - sign * hw_top * normal,
                         bottom - sign * hw_bot * normal, bottom + sign * hw_bot * normal])
        h, w = img.shape[:2]
        x0, y0 = np.maximum(np.floor(quad.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(quad.max(0)).astype(int) + 2, (w, h))
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        local = (quad - (x0, y0)).astype(np.float32)
        affine = cv2.getAffineTransform(self.tex_pts, local[[0, 1, 3]])
        cloth = cv2.warpAffine(self.tex, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        mask = np.zeros(roi.shape[:2], np.uint8)
        pts = np.round(local * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, _AA, _SHIFT)
        alpha = mask[..., None].astype(np.float32) * (1 / 255)
        roi[:] = (roi + (cloth.astype(np.float32) - roi) * alpha).astype(np.uint8)
        cv2.polylines(roi, [pts], True, _shade(look.shirt, 0.5), 1, _AA, _SHIFT)

    def head(self, img: np.ndarray, j: np.ndarray, f: np.ndarray) -> None:
        look = self.look
        r = look.head_radius
        centre = tuple(f[HEAD])
        up = j[HEAD] - (j[L_SHOULDER] + j[R_SHOULDER]) / 2
        angle = float(np.degrees(np.arctan2(up[1], up[0]))) + 90 if np.hypot(*up) > 1e-6 else 0.0
        dark, skin, _ = self.shades[look.skin]
        cv2.circle(img, centre, int(r * _ONE), dark, -1, _AA, _SHIFT)
        cv2.circle(img, centre, int(max(r - 1, 0.5) * _ONE), skin, -1, _AA, _SHIFT)
        # Hair: the half disc away from the shoulders.
        cv2.ellipse(img, centre, (int(r * _ONE), int(r * _ONE)), angle, 180, 360, look.hair, -1, _AA, _SHIFT)
        if r >= 4:  # a soft highlight; at smaller sizes it would read as an eye
            hl = (int(f[HEAD][0] - 0.4 * r * _ONE), int(f[HEAD][1]))
            cv2.circle(img, hl, int(r / 4 * _ONE), _shade(look.skin, 1.15), -1, _AA, _SHIFT)

    def draw(self, img: np.ndarray, j: np.ndarray) -> None:
        f = np.round(j * _ONE).astype(np.int64)
        pt = [tuple(int(v) for v in row) for row in f]
        for a, b, color, width in self.legs:
            self.capsule(img, pt[a], pt[b], color, width)
        for ankle in (R_ANKLE, L_ANKLE):
            cv2.circle(img, pt[ankle], int(max(self.leg_w * 0.55, 1) * _ONE), self.look.shoes, -1, _AA, _SHIFT)
        neck = tuple(int(v) for v in (f[L_SHOULDER] + f[R_SHOULDER]) // 2)
        self.capsule(img, neck, pt[HEAD], self.look.skin, max(int(round(self.look.arm_width)), 1))
        self.torso(img, j)
        for a, b, color, width in self.arms:
            self.capsule(img, pt[a], pt[b], color, width)
        for wrist in (R_WRIST, L_WRIST):
            cv2.circle(img, pt[wrist], int(max(self.arm_w * 0.5, 1) * _ONE), self.look.skin, -1, _AA, _SHIFT)
        self.head(img, j, f)


def render_puppet_video(joints: np.ndarray, look: Look, background: np.ndarray) -> np.ndarray:
    """Draw the figure with joints (T, 13, 2) in pixel coordinates (pixel-centre convention) over a
    static background (S, S, 3) uint8 -> uint8 video (T, S, S, 3), RGB."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 2) or not np.isfinite(joints).all():
        raise ValueError(f"joints must be finite with shape (T, {NUM_JOINTS}, 2), got {joints.shape}")
    background = np.ascontiguousarray(background, dtype=np.uint8)
    painter = _Painter(look)
    video = np.empty((len(joints),) + background.shape, np.uint8)
    for t in range(len(joints)):
        frame = video[t]
        frame[:] = background
        painter.draw(frame, joints[t])
    return video


def frame_boxes(joints: np.ndarray, visibility: np.ndarray, margin: float, size: int) -> np.ndarray:
    """(T, 4) [x1, y1, x2, y2] per frame around the visible joints (all joints in frames with none
    visible), grown by `margin` pixels and clipped to the frame."""
    vis = visibility > 0
    use = np.where(vis.any(1, keepdims=True), vis, True)[..., None]
    lo = np.where(use, joints, np.inf).min(1) - margin
    hi = np.where(use, joints, -np.inf).max(1) + margin
    return np.clip(np.concatenate([lo, hi], 1), 0, size - 1)


# ----------------------------------------------------------------------------------------------------
# Dataset generation.


@dataclass(frozen=True)
class _Job:
    index: int
    root: str
    size: int
    frames: int
    seed: int
    label: str | None  # a Penn label file to animate, or None for a procedural motion


def _make_video(job: _Job) -> str:
    """Generate video `job.index` into `job.root` (frames + label); returns its name."""
    rng = np.random.default_rng([job.seed, job.index])
    motion = penn_motion(read_label(job.label)) if job.label else procedural_motion(rng, job.frames)
    joints, unit_px = fit_to_frame(motion.joints, motion.unit, job.size, rng)
    look = random_look(rng, unit_px)
    video = render_puppet_video(joints, look, random_background(rng, job.size))
    name = f"{job.index + 1:04d}"
    folder = Path(job.root) / "frames" / name
    folder.mkdir(parents=True)
    for t, frame in enumerate(video):
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"JPEG encoding failed for {folder / frame_name(t)}")
        (folder / frame_name(t)).write_bytes(buf.tobytes())
    T = len(video)
    seq = PennSequence(name=name, action=motion.action, pose=motion.pose, x=joints[..., 0], y=joints[..., 1],
                       visibility=motion.visibility, bbox=frame_boxes(joints, motion.visibility, look.margin, job.size),
                       dimensions=(job.size, job.size, T), train=motion.train)
    write_label(Path(job.root) / "labels" / f"{name}.mat", seq)
    return name


def _penn_label_files(penn_labels: str | Path | None) -> list[Path]:
    if penn_labels is None:
        raise UserError("source 'penn' / 'mixed' needs penn_labels (a Penn Action labels folder)")
    folder = Path(penn_labels)
    if (folder / "labels").is_dir():
        folder = folder / "labels"
    if not folder.is_dir():
        raise UserError("Penn Action labels folder not found", folder)
    files = sorted((p for p in folder.glob("*.mat") if not p.name.startswith(".")),
                   key=lambda p: (int(p.stem), p.stem) if p.stem.isdigit() else (1 << 62, p.stem))
    if not files:
        raise UserError("no .mat label files found", folder)
    return files


# frame sides make_puppet_dataset accepts: smaller puppets are a few pixels tall; a 1024x1024 frame is 3 MB
# decoded (Penn Action's are 480x640), and a side of 10^5 would need 30 GB per frame
MIN_SIZE, MAX_SIZE = 16, 1024


def make_puppet_dataset(out_root: str | Path, num_videos: int | None, size: int = 64, frames: int = 48,
                        seed: int = 0, source: str = "procedural", penn_labels: str | Path | None = None,
                        workers: int = 1, progress: bool = False) -> PennActionDataset:
    """Write `num_videos` puppet videos to `out_root` in the Penn Action layout and open it.

    source: "procedural" (`frames` frames each, train = 1), "penn" (the label files of `penn_labels` in
    sorted order, cycled when num_videos exceeds them; None means all; action, pose, train and
    visibility copied) or "mixed" (even videos procedural, odd ones Penn). Everything is written into a
    temporary folder beside `out_root` and renamed at the end, so a failure leaves nothing behind. An
    existing `out_root` is replaced only if it is empty or was made by this function.
    """
    out_root = Path(out_root)
    if source not in SOURCES:
        raise UserError(f"unknown puppet source {source!r}; expected one of {', '.join(SOURCES)}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"size must be {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    if frames < 2:
        raise UserError(f"frames must be >= 2 (a training pair is two frames), got {frames}")
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    files = _penn_label_files(penn_labels) if source != "procedural" else []
    if num_videos is None:
        if source == "procedural":
            raise UserError("num_videos is required for procedural puppets")
        num_videos = len(files) if source == "penn" else 2 * len(files)
    if num_videos < 1:
        raise UserError(f"num_videos must be >= 1, got {num_videos}")
    if out_root.exists():
        if not out_root.is_dir() or (any(out_root.iterdir()) and not (out_root / MARKER).is_file()):
            raise UserError(f"exists and is not a puppet dataset ({MARKER} missing); refusing to replace it",
                            out_root)

    def label_for(i: int) -> str | None:
        if source == "procedural" or (source == "mixed" and i % 2 == 0):
            return None
        k = i if source == "penn" else i // 2
        return str(files[k % len(files)])

    with atomic_dir(out_root) as tmp:
        (tmp / "labels").mkdir()
        (tmp / "frames").mkdir()
        jobs = [_Job(i, str(tmp), size, frames, seed, label_for(i)) for i in range(num_videos)]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=num_videos, desc="puppets", unit="video")
        if workers == 1:
            for job in jobs:
                _make_video(job)
                if bar:
                    bar.update()
        else:
            # spawn: no fork of a parent that may hold torch / BLAS threads
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(_make_video, jobs, chunksize=max(1, num_videos // (8 * workers))):
                    if bar:
                        bar.update()
        if bar:
            bar.close()
        meta = dict(generator="structvid.data.puppet", version=1, num_videos=num_videos, size=size, frames=frames,
                    seed=seed, source=source, penn_labels=None if penn_labels is None else str(penn_labels))
        (tmp / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
    return PennActionDataset(out_root)


def bench_render(num_frames: int = 2000, size: int = 64, seed: int = 0) -> dict[str, float]:
    """Frames per second of puppet rendering alone and of rendering plus JPEG encoding and writing
    (single process; motions, looks and backgrounds are prepared outside the timings)."""
    if num_frames < 1 or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"need num_frames >= 1 and size {MIN_SIZE}..{MAX_SIZE}, got {num_frames}, {size}")
    videos = []
    i = 0
    while sum(len(v[0]) for v in videos) < num_frames:
        rng = np.random.default_rng([seed, i])
        motion = procedural_motion(rng, min(48, num_frames - sum(len(v[0]) for v in videos)))
        joints, unit_px = fit_to_frame(motion.joints, motion.unit, size, rng)
        videos.append((joints, random_look(rng, unit_px), random_background(rng, size)))
        i += 1
    t0 = time.perf_counter()
    for joints, look, bg in videos:
        render_puppet_video(joints, look, bg)
    render_s = time.perf_counter() - t0
    with TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        n = 0
        for joints, look, bg in videos:
            for frame in render_puppet_video(joints, look, bg):
                ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                (Path(tmp) / frame_name(n)).write_bytes(buf.tobytes())
                n += 1
        write_s = time.perf_counter() - t0
    return {"frames": float(num_frames), "size": float(size), "render_fps": num_frames / render_s,
            "render_write_fps": num_frames / write_s}


__all__ = [
    "Look", "Motion", "PROCEDURAL_ACTIONS", "bench_render", "fit_to_frame", "frame_boxes",
    "make_puppet_dataset", "penn_motion", "procedural_motion", "random_background", "random_look",
    "render_puppet_video",
]
