"""The synthetic benchmark: short key actions among misleading decoys, in UCF101's layout.

T frames, H, W image size, C classes.

Each class is an object with three cues: a colour, a shape and a motion pattern (one of twelve:
eight directions of travel, orbits either way, growing, shrinking). A video of class c shows,
over a textured background that the camera pans across, a few grey clutter objects drifting the
whole time and

- the **key window**: ``key_fraction`` of the video at a random position, where the class object
  appears with c's colour and c's shape and moves with c's motion;
- ``decoys`` **decoy windows** elsewhere, each ``decoy_fraction`` of the video long, all
  pointing at one other class d: in an *appearance decoy* an object with d's colour (on another
  shape) moves with a wrong motion; in a *motion decoy* a grey object of another shape moves
  with d's motion. The two kinds alternate.

So both streams can learn: a single RGB frame shows colour and shape, flow shows motion and
silhouette (every object carries a checker texture, so TV-L1 sees it move; the motions are
directions, so a horizontal flip changes the class of a flow stack: the flow recipe trains
without flips). A frame-level classifier is confidently right only in the key window and partly
fooled (by the one cue a decoy shares with d) in the decoy windows. The decoy time is fixed
(``decoys * decoy_fraction``, 0.3 by default), so as ``key_fraction`` shrinks the misleading
time outweighs the key window more and more: averaging over all segments leans towards d,
while a pooling that finds the key window need not. That is the paper's premise.

Layout written (the UCF101 reader reads it unchanged)::

    OUT/videos/<Class>/v_<Class>_gGG_cCC.avi       mpeg4, GOP 12: cheap frame-exact seeking
    OUT/ucfTrainTestlist/classInd.txt, trainlist0k.txt, testlist0k.txt (k = 1..3; by group)
    OUT/annotations/key_windows.csv                video,label,key_start,key_end,decoy_class,decoys
    OUT/annotations/instances.json                 untrimmed (--instances K): ActivityNet style
    OUT/synth.json                                  the SynthConfig used

With ``instances = K`` (``datp synth OUT --instances K``) the videos are untrimmed: 1 to K
instances of the class action among the decoys and background (:func:`plan_untrimmed_video`
says what makes that a fair localization test), their ground truth in seconds in
``instances.json`` (``key_windows.csv`` then gives each video's longest instance).

Videos come in groups of ``clips_per_group`` that share a background (as a UCF101 group shares
actor and scene); split k tests on a different block of groups. Everything is a pure function of
the config: the same config gives byte-identical lists and identical frames.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datp.data.video import VIDEO_EXTENSIONS, write_video
from datp.errors import InputError
from datp.io import atomic_write_text

log = logging.getLogger(__name__)

COLOURS = {  # name -> RGB; saturated, so they stand out from the muted background
    "Red": (230, 30, 30), "Orange": (245, 140, 20), "Yellow": (240, 230, 40),
    "Lime": (150, 240, 30), "Green": (20, 170, 50), "Teal": (20, 160, 150),
    "Cyan": (40, 230, 240), "Azure": (40, 120, 250), "Blue": (40, 40, 220),
    "Violet": (140, 50, 230), "Magenta": (235, 40, 210), "Pink": (250, 150, 190),
}
SHAPES = ("Disc", "Square", "Triangle", "Diamond", "Cross", "Ring")
MOTIONS = ("Right", "Left", "Down", "Up", "DownRight", "UpLeft", "UpRight", "DownLeft",
           "OrbitCW", "OrbitCCW", "Grow", "Shrink")
_DIRECTIONS = {"Right": (1, 0), "Left": (-1, 0), "Down": (0, 1), "Up": (0, -1),
               "DownRight": (1, 1), "UpLeft": (-1, -1), "UpRight": (1, -1), "DownLeft": (-1, 1)}


@dataclass(frozen=True)
class SynthConfig:
    classes: int = 10
    videos_per_class: int = 20
    clips_per_group: int = 4
    """Videos per group (UCF101: 4 to 7); a group shares its background."""
    frames: int = 48
    height: int = 64
    width: int = 64
    fps: int = 25
    key_fraction: float = 0.3
    """Share of the video in which the class-defining action happens."""
    decoys: int = 2
    """Decoy windows per video, fewer if they do not fit beside the key window."""
    decoy_fraction: float = 0.15
    """Length of each decoy window as a share of the video. Fixed while ``key_fraction`` varies,
    so the misleading time grows relative to the key window as the key window shrinks."""
    instances: int = 0
    """0: trimmed videos, one key window each (the default). K >= 1: untrimmed videos with 1 to
    K instances of the class action (:func:`plan_untrimmed_video`), each up to
    ``key_fraction`` of the video long, and their ground truth in ``instances.json``."""
    clutter: int = 2
    """Grey distractor objects drifting through the whole video."""
    camera_motion: float = 0.5
    """Largest camera pan speed, pixels per frame (the background moves; 0 for a still camera)."""
    speed: float = 0.025
    """Object speed as a fraction of the image width per frame."""
    noise: float = 3.0
    """Standard deviation of the pixel noise added to every frame (0..255 scale)."""
    texture: float = 0.65
    """Contrast of the checker pattern every object carries: its dark cells are the object's
    colour times ``1 - texture`` (0: flat objects). Flat coloured shapes of about the
    background's brightness were nearly invisible to TV-L1 on grey frames, so the flow stream
    could not learn (docs/RESULTS.md, Table 5)."""
    seed: int = 0
    extension: str = ".avi"
    codec: str = "mpeg4"
    gop: int = 12
    names: list[str] = field(default_factory=list)
    """Class names; empty: generated from the cues, e.g. ``RedDiscRight``."""

    def __post_init__(self) -> None:
        """Every field checked, each problem naming the ``datp synth`` option that sets it and
        what to change; all of them at once, before anything is written."""
        problems = []

        def refuse(name: str, what: str) -> None:
            problems.append(f"{_option(name)} {getattr(self, name)}: {what}")

        for name, low in (("classes", 2), ("videos_per_class", 2), ("clips_per_group", 1),
                          ("frames", 4), ("fps", 1), ("decoys", 0), ("clutter", 0), ("seed", 0),
                          ("gop", 1), ("instances", 0)):
            if getattr(self, name) < low:
                refuse(name, f"must be >= {low}")
        for name in ("camera_motion", "speed", "noise"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                refuse(name, "must be a finite number >= 0")
        for name in ("key_fraction", "decoy_fraction"):
            if not 0 < getattr(self, name) <= 1:
                refuse(name, "must lie in (0, 1], a share of the video")
        if not 0 <= self.texture <= 1:
            refuse("texture", "must lie in [0, 1]")
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            problems.append(f"--size {self.width}x{self.height}: width and height must be even "
                            "and >= 16")
        if self.extension not in VIDEO_EXTENSIONS:
            refuse("extension", f"must be one of {', '.join(VIDEO_EXTENSIONS)}")
        if self.names and len(self.names) != self.classes:
            problems.append(f"names: {len(self.names)} names for {self.classes} classes")
        bad_names = [n for n in self.names if not n or "/" in n or len(n.split()) != 1]
        if bad_names:
            problems.append(f"names {bad_names}: a class name must be one word without '/' "
                            "(it is a folder name and a field of UCF101's lists)")
        if self.videos_per_class >= 2 and self.clips_per_group >= 1:
            groups = math.ceil(self.videos_per_class / self.clips_per_group)
            if groups < 2:
                problems.append(
                    f"--videos-per-class {self.videos_per_class} with --clips-per-group "
                    f"{self.clips_per_group} makes {groups} group per class; a train/test split "
                    f"needs at least 2 groups: raise --videos-per-class to "
                    f"{2 * self.clips_per_group} or lower --clips-per-group to "
                    f"{self.videos_per_class // 2}"
                )
        if self.instances > 0 and not problems:
            longest, _, gap, background = untrimmed_lengths(self)
            needed = self.instances * longest + (self.instances - 1) * gap + background
            if needed > self.frames:
                problems.append(
                    f"--instances {self.instances} with --key-fraction {self.key_fraction} and "
                    f"--frames {self.frames}: {self.instances} instances of up to {longest} "
                    f"frames, {self.instances - 1} gaps of {gap} and {background} frames of "
                    f"background need {needed} frames: lower --key-fraction (the longest "
                    "instance's share) or --instances, or raise --frames"
                )
        if problems:
            raise InputError("\n".join(problems))


def _option(name: str) -> str:
    """The ``datp synth`` option that sets SynthConfig field ``name``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class ClassCues:
    name: str
    colour: tuple[int, int, int]
    shape: str
    motion: str


def class_cues(config: SynthConfig) -> list[ClassCues]:
    """Colour, shape and motion of every class, all distinct (colour and motion cycle)."""
    colours = list(COLOURS.items())
    cues = []
    for c in range(config.classes):
        colour_name, colour = colours[c % len(colours)]
        shape = SHAPES[c % len(SHAPES)]
        motion = MOTIONS[(c + c // len(MOTIONS)) % len(MOTIONS)]
        name = config.names[c] if config.names else f"{colour_name}{shape}{motion}"
        cues.append(ClassCues(name=name, colour=colour, shape=shape, motion=motion))
    names = [cue.name for cue in cues]
    if len(set(names)) != len(names):  # more classes than the cue combinations name apart
        cues = [ClassCues(f"{cue.name}{c:03d}", cue.colour, cue.shape, cue.motion)
                for c, cue in enumerate(cues)]
    return cues


# --- drawing ----------------------------------------------------------------------------------

def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the unit frame (radius 1), for coordinates ``u`` (right) and ``v`` (down)."""
    if shape == "Disc":
        return u * u + v * v <= 1.0
    if shape == "Square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "Triangle":
        return (v <= 0.7) & (v >= 2.0 * np.abs(u) - 1.0)
    if shape == "Diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "Cross":
        return ((np.abs(u) <= 0.33) | (np.abs(v) <= 0.33)) & (np.maximum(np.abs(u), np.abs(v)) <= 1)
    if shape == "Ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(f"unknown shape {shape!r}")


CHECKER_CELLS = 2.5
"""Checker cells per object radius: cells of ~3.6 px at 64 px frames, a texture TV-L1 can track."""


def _draw(frame: np.ndarray, shape: str, colour, cx: float, cy: float, radius: float,
          texture: float = 0.0) -> None:
    """Paint a filled ``shape`` of ``radius`` centred at (cx, cy) into ``frame`` [H, W, 3], with
    a checker pattern of contrast ``texture`` that moves and scales with the object."""
    H, W = frame.shape[:2]
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, W)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, H)
    if x0 >= x1 or y0 >= y1:
        return
    v, u = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u, v = (u + 0.5 - cx) / radius, (v + 0.5 - cy) / radius
    mask = _shape_mask(shape, u, v)
    paint = np.broadcast_to(np.asarray(colour, dtype=np.float32), (*mask.shape, 3))
    if texture > 0:
        dark = (np.floor(u * CHECKER_CELLS) + np.floor(v * CHECKER_CELLS)) % 2 == 1
        paint = np.where(dark[..., None], paint * (1.0 - texture), paint)
    frame[y0:y1, x0:x1][mask] = paint[mask]


def _trajectory(motion: str, length: int, *, config: SynthConfig, radius: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, y and radius ``[length]`` of an object performing ``motion`` over a window."""
    H, W = config.height, config.width
    step = config.speed * W
    t = np.arange(length, dtype=np.float64) - (length - 1) / 2  # centred time
    jitter = rng.uniform(-0.12, 0.12, size=2) * (W, H)
    cx, cy = W / 2 + jitter[0], H / 2 + jitter[1]
    radii = np.full(length, radius)
    if motion in _DIRECTIONS:
        dx, dy = _DIRECTIONS[motion]
        norm = math.hypot(dx, dy)
        xs, ys = cx + t * step * dx / norm, cy + t * step * dy / norm
    elif motion.startswith("Orbit"):
        orbit = 0.22 * min(H, W)
        sign = 1.0 if motion == "OrbitCW" else -1.0  # image y points down: +angle is clockwise
        angle = rng.uniform(0, 2 * math.pi) + sign * t * step / orbit
        xs, ys = cx + orbit * np.cos(angle), cy + orbit * np.sin(angle)
    else:  # Grow / Shrink: the radius changes by the same speed
        sign = 1.0 if motion == "Grow" else -1.0
        radii = np.clip(radius + sign * t * step * 0.5, 0.4 * radius, 2.2 * radius)
        xs, ys = np.full(length, cx), np.full(length, cy)
    # Keep the object inside the frame (a long window could otherwise leave it).
    xs = np.clip(xs, radii, W - radii)
    ys = np.clip(ys, radii, H - radii)
    return xs, ys, radii


def _background(config: SynthConfig, margin: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, smooth texture ``[H + 2m, W + 2m, 3]`` (float32) shared by a group's videos."""
    H, W = config.height + 2 * margin, config.width + 2 * margin
    coarse = rng.uniform(0, 1, size=(H // 8 + 2, W // 8 + 2, 3)).astype(np.float32)
    # Bilinear upsampling by 8 with numpy: smooth blobs at a scale of ~8 pixels.
    ys = np.linspace(0, coarse.shape[0] - 1.001, H)
    xs = np.linspace(0, coarse.shape[1] - 1.001, W)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    texture = top * (1 - fy) + bottom * fy
    grey = texture.mean(axis=2, keepdims=True)
    muted = 0.75 * grey + 0.25 * texture  # low saturation: class colours must stand out
    base = rng.uniform(70, 130)
    return (base + 70 * (muted - 0.5)).astype(np.float32)


@dataclass(frozen=True)
class VideoPlan:
    """What happens in one video: the windows ``[start, end)`` in frames."""

    label: int
    key: tuple[int, int]
    """The class action's window; in an untrimmed video the longest of its instances."""
    decoy_class: int
    decoys: tuple[tuple[int, int, str], ...]
    """(start, end, "appearance" | "motion") per decoy window."""
    instances: tuple[tuple[int, int], ...] = ()
    """Untrimmed videos: every window of the class action, in time order (``key`` among them).
    Empty for a trimmed video, whose one action window is ``key``."""

    @property
    def actions(self) -> tuple[tuple[int, int], ...]:
        """Every window in which the class action is drawn."""
        return self.instances or (self.key,)


def plan_video(config: SynthConfig, label: int, rng: np.random.Generator) -> VideoPlan:
    T = config.frames
    length = min(T, max(2, round(config.key_fraction * T)))
    start = int(rng.integers(0, T - length + 1))
    # Decoy windows, packed at random into the time before and after the key window.
    size = max(2, round(config.decoy_fraction * T))
    capacity_before, capacity_after = start // size, (T - start - length) // size
    count = min(config.decoys, capacity_before + capacity_after)
    count_before = int(rng.integers(max(0, count - capacity_after),
                                    min(count, capacity_before) + 1))

    def place(offset: int, span: int, n: int) -> list[tuple[int, int]]:
        gaps = np.sort(rng.integers(0, span - n * size + 1, size=n))
        return [(int(offset + g + i * size), int(offset + g + (i + 1) * size))
                for i, g in enumerate(gaps)]

    taken = place(0, start, count_before) + place(start + length, T - start - length,
                                                  count - count_before)
    decoys = []
    kinds = ("appearance", "motion")
    first = int(rng.integers(2))  # the kinds alternate, starting at random
    for i, (s, e) in enumerate(sorted(taken)):
        decoys.append((s, e, kinds[(first + i) % 2]))
    others = [c for c in range(config.classes) if c != label]
    decoy_class = int(others[rng.integers(len(others))])
    return VideoPlan(label=label, key=(start, start + length), decoy_class=decoy_class,
                     decoys=tuple(decoys))


UNTRIMMED_GAP = 0.05
"""Untrimmed videos: the least background between two windows, as a share of the video, so
that neighbouring instances stay apart at the resolution of the test segments."""
UNTRIMMED_BACKGROUND = 0.2
"""Untrimmed videos: the least share of the video that is background (no instance, no decoy)."""


def untrimmed_lengths(config: SynthConfig) -> tuple[int, int, int, int]:
    """Frames of an untrimmed video's longest and shortest instance, of the least gap between
    two windows, and of the least background."""
    T = config.frames
    longest = min(T, max(2, round(config.key_fraction * T)))
    shortest = max(2, (longest + 1) // 2)
    gap = max(1, round(UNTRIMMED_GAP * T))
    background = max(1, round(UNTRIMMED_BACKGROUND * T))
    return longest, shortest, gap, background


def plan_untrimmed_video(config: SynthConfig, label: int, rng: np.random.Generator) -> VideoPlan:
    """An untrimmed video (``config.instances`` = K >= 1), built to be a fair localization test:

    - **how many**: 1 to K instances, uniformly, so the count is no prior a method can assume;
    - **how long**: each instance between half of and all of ``key_fraction`` of the video
      (uniform in frames), so no fixed width fits them all;
    - **where**: instances and decoys in a random order, the free time split at random between
      the gaps (uniform over the compositions), at least ``UNTRIMMED_GAP`` of the video between
      any two windows (neighbouring instances stay separable) and no fixed place (a prior on
      the centre, like a mixture's initial means, gains nothing);
    - **decoys** as in trimmed videos: windows pointing at one other class, alternately by its
      colour (on another shape, with a motion of neither class) and by its motion (a grey object
      of another shape), as many of ``decoys`` as fit beside the instances; so a detector fooled
      by one cue places false instances of that class;
    - **background**: at least ``UNTRIMMED_BACKGROUND`` of the video holds neither, only the
      panning textured background and the drifting grey clutter present throughout.

    The class action is drawn exactly as in a trimmed video, so one class looks the same in both.
    """
    T = config.frames
    longest, shortest, gap, background = untrimmed_lengths(config)
    count = int(rng.integers(1, config.instances + 1))
    lengths = [int(n) for n in rng.integers(shortest, longest + 1, size=count)]
    size = max(2, round(config.decoy_fraction * T))

    def free(decoys: int) -> int:
        return T - sum(lengths) - decoys * size

    decoys = config.decoys
    while decoys > 0 and free(decoys) < max((count + decoys - 1) * gap, background):
        decoys -= 1
    # Windows in a random order: ("instance", length) and ("decoy", size).
    windows = [("instance", n) for n in lengths] + [("decoy", size)] * decoys
    windows = [windows[i] for i in rng.permutation(len(windows))]
    spare = free(decoys) - (len(windows) - 1) * gap  # beyond the least gaps
    cuts = np.sort(rng.integers(0, spare + 1, size=len(windows)))
    extra = np.diff(np.concatenate([[0], cuts]))  # [W] extra time before each window
    instances, decoy_windows = [], []
    position = 0
    for i, (kind, length) in enumerate(windows):
        position += int(extra[i]) + (gap if i else 0)
        (instances if kind == "instance" else decoy_windows).append((position, position + length))
        position += length
    kinds = ("appearance", "motion")
    first = int(rng.integers(2))
    decoy_plans = tuple((s, e, kinds[(first + i) % 2]) for i, (s, e) in enumerate(decoy_windows))
    others = [c for c in range(config.classes) if c != label]
    decoy_class = int(others[rng.integers(len(others))])
    key = max(instances, key=lambda w: (w[1] - w[0], -w[0]))
    return VideoPlan(label=label, key=key, decoy_class=decoy_class, decoys=decoy_plans,
                     instances=tuple(instances))


def render_video(config: SynthConfig, plan: VideoPlan, background: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB ``[T, H, W, 3]`` for one planned video."""
    T, H, W = config.frames, config.height, config.width
    cues = class_cues(config)
    margin = (background.shape[0] - H) // 2
    radius = 0.14 * min(H, W)
    # Camera: a constant pan in a random direction, the background slides under the objects.
    pan_speed = rng.uniform(0, config.camera_motion)
    pan_angle = rng.uniform(0, 2 * math.pi)
    pan = np.arange(T)[:, None] * pan_speed * np.array([math.cos(pan_angle), math.sin(pan_angle)])
    pan = np.clip(np.round(pan - pan.mean(axis=0)), -margin, margin).astype(int)
    frames = np.empty((T, H, W, 3), dtype=np.float32)
    for t in range(T):
        x, y = margin + pan[t]
        frames[t] = background[y : y + H, x : x + W]

    # Clutter: grey shapes bouncing slowly through the whole video.
    for _ in range(config.clutter):
        shape = SHAPES[rng.integers(len(SHAPES))]
        grey = float(rng.uniform(40, 200))
        r = radius * rng.uniform(0.5, 0.8)
        pos = rng.uniform((r, r), (W - r, H - r))
        vel = rng.normal(size=2)
        vel *= 0.5 * config.speed * W / max(np.linalg.norm(vel), 1e-6)
        for t in range(T):
            _draw(frames[t], shape, (grey, grey, grey), pos[0], pos[1], r, config.texture)
            pos = pos + vel
            for k, side in enumerate((W, H)):  # bounce off the borders
                if not r <= pos[k] <= side - r:
                    vel[k] = -vel[k]
                    pos[k] = np.clip(pos[k], r, side - r)

    def act(window, shape, colour, motion):
        start, end = window
        xs, ys, rs = _trajectory(motion, end - start, config=config, radius=radius, rng=rng)
        for i, t in enumerate(range(start, end)):
            _draw(frames[t], shape, colour, xs[i], ys[i], rs[i], config.texture)

    own = cues[plan.label]
    for window in plan.actions:
        act(window, own.shape, own.colour, own.motion)
    decoy = cues[plan.decoy_class]
    for start, end, kind in plan.decoys:
        # Another shape than the decoy class's, and a motion of neither class.
        shapes = [s for s in SHAPES if s not in (decoy.shape, own.shape)]
        shape = shapes[rng.integers(len(shapes))]
        if kind == "appearance":
            motions = [m for m in MOTIONS if m not in (decoy.motion, own.motion)]
            act((start, end), shape, decoy.colour, motions[rng.integers(len(motions))])
        else:
            grey = float(rng.uniform(150, 230))
            act((start, end), shape, (grey, grey, grey), decoy.motion)
    if config.noise > 0:
        frames += rng.normal(0, config.noise, size=frames.shape).astype(np.float32)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def video_name(class_name: str, group: int, clip: int, extension: str) -> str:
    """UCF101's naming: ``v_<Class>_gGG_cCC.avi`` (1-based group and clip)."""
    return f"v_{class_name}_g{group:02d}_c{clip:02d}{extension}"


def held_out_groups(num_groups: int, split: int) -> set[int]:
    """The 1-based groups split ``split`` (1..3) tests on: a block of about 7 / 25 of them."""
    size = max(1, round(num_groups * 7 / 25))
    first = ((split - 1) * size) % num_groups
    return {(first + i) % num_groups + 1 for i in range(size)}


def generate(config: SynthConfig, out: str | Path) -> Path:
    """Write the dataset under ``out`` (see the module docstring); returns ``out``."""
    out = Path(out)
    cues = class_cues(config)
    num_groups = math.ceil(config.videos_per_class / config.clips_per_group)
    assert num_groups >= 2, "SynthConfig checks that every class makes a train/test split"
    margin = math.ceil(config.camera_motion * config.frames / 2) + 1
    lists = out / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    entries = []  # (relative path, label, group, plan)
    for label, cue in enumerate(cues):
        for group in range(1, num_groups + 1):
            background = _background(config, margin,
                                     np.random.default_rng([config.seed, label, group, 0]))
            clips = min(config.clips_per_group,
                        config.videos_per_class - (group - 1) * config.clips_per_group)
            for clip in range(1, clips + 1):
                rng = np.random.default_rng([config.seed, label, group, clip])
                plan = (plan_untrimmed_video if config.instances else plan_video)(config, label,
                                                                                  rng)
                frames = render_video(config, plan, background, rng)
                relative = f"{cue.name}/{video_name(cue.name, group, clip, config.extension)}"
                write_video(out / "videos" / relative, frames, fps=config.fps,
                            codec=config.codec, gop=config.gop)
                entries.append((relative, label, group, plan))
        log.info("class %d/%d %s written", label + 1, len(cues), cue.name)

    with open(lists / "classInd.txt", "w", newline="") as handle:
        handle.writelines(f"{c + 1} {cue.name}\r\n" for c, cue in enumerate(cues))
    for split in (1, 2, 3):
        tested = held_out_groups(num_groups, split)
        with open(lists / f"trainlist{split:02d}.txt", "w", newline="") as train, \
                open(lists / f"testlist{split:02d}.txt", "w", newline="") as test:
            for relative, label, group, _ in entries:
                if group in tested:
                    test.write(f"{relative}\r\n")
                else:
                    train.write(f"{relative} {label + 1}\r\n")
    with open(out / "annotations" / "key_windows.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["video", "label", "key_start", "key_end", "decoy_class", "decoys"])
        for relative, label, _, plan in entries:
            decoys = ";".join(f"{s}-{e}:{kind}" for s, e, kind in plan.decoys)
            writer.writerow([relative, label, *plan.key, plan.decoy_class, decoys])
    if config.instances:
        test = held_out_groups(num_groups, 1)
        write_instances(out / "annotations" / "instances.json", config, cues,
                        [(relative, plan, "test" if group in test else "train")
                         for relative, _, group, plan in entries])
    atomic_write_text(out / "synth.json", json.dumps(recorded(config), indent=2,
                                                     sort_keys=True) + "\n")
    return out


def recorded(config: SynthConfig) -> dict:
    """What ``synth.json`` records of ``config``."""
    settings = asdict(config)
    if not config.instances:  # a trimmed dataset's synth.json stays as it was before --instances
        del settings["instances"]
    return settings


def written_before(config: SynthConfig, out: str | Path) -> bool:
    """Whether ``out`` holds this very benchmark already (its ``synth.json`` says ``config``);
    ``InputError`` in one line when it holds another one or other data, which writing there
    would mix or replace."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: OUT is a file, not a folder")
    record = out / "synth.json"
    if record.is_file():
        try:
            found = json.loads(record.read_text())
        except ValueError:
            found = None
        if found == recorded(config):
            return True
        wanted = recorded(config)
        changed = (sorted(k for k in wanted.keys() | found.keys()
                          if found.get(k) != wanted.get(k))
                   if isinstance(found, dict) else ["synth.json unreadable"])
        raise InputError(f"{out} holds a synthetic benchmark made with other settings "
                         f"({', '.join(changed)}); choose another OUT, or move it away")
    held = [name for name in ("videos", "ucfTrainTestlist", "annotations") if (out / name).exists()]
    if held:
        raise InputError(f"{out} holds data datp synth did not write ({', '.join(held)}); "
                         "choose another OUT")
    return False


def write_instances(path: Path, config: SynthConfig, cues: list[ClassCues],
                    videos: list[tuple[str, VideoPlan, str]]) -> None:
    """The ground truth of untrimmed videos ``(relative path, plan, subset)`` as ActivityNet-style
    JSON: video ids as the UCF101 reader names the videos, subsets as split 1 has them
    (``train``, ``test``), seconds as frame / fps (an instance of frames ``[s, e)`` spans
    ``[s / fps, e / fps]``), the duration ``frames / fps``."""
    from datp.data.temporal_annotations import AnnotatedVideo, Instance, TemporalAnnotations

    annotated = {
        relative: AnnotatedVideo(
            video=relative, subset=subset, duration=config.frames / config.fps,
            fps=float(config.fps),
            instances=tuple(Instance(cues[plan.label].name, s / config.fps, e / config.fps)
                            for s, e in plan.actions))
        for relative, plan, subset in videos
    }
    TemporalAnnotations(videos=annotated, source=str(path)).save(path, version="datp synth")


def read_key_windows(path: str | Path) -> dict[str, tuple[int, int]]:
    """``key_windows.csv`` -> {video relative path: (key_start, key_end)} (end exclusive)."""
    with open(path, newline="") as handle:
        return {row["video"]: (int(row["key_start"]), int(row["key_end"]))
                for row in csv.DictReader(handle)}
