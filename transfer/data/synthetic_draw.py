"""Vectorised drawing for the synthetic dataset: families, class recipes and batch rendering.

The dataset mirrors ImageNet's structure in miniature (docs/small-scale.md gives the reasoning):
  - low level, shared by every class: one colour palette, lighting gradients, sensor noise, and
    edges of every orientation (all parts rotate with the object);
  - mid level, shared within a superclass: a vocabulary of part kinds. Man-made parts have straight
    edges, right angles, uniform colour and regular repetition (panels, frames, window grids,
    stripes); natural parts have curved or fractal contours, textures and shading gradients (lobed
    blobs, fur, spots, mottle). Each superclass also has its own backgrounds and clutter: walls and
    floors with straight seams for man-made objects, textured ground for natural ones;
  - a family (the class tree's "kind", like ImageNet's felids or dogs): a body plan of a primary part
    and a satellite part of fixed kinds, which the family's classes share;
  - high level, one class: which further part it has, the layout of its parts, their proportions,
    textures and colours.
So a random half of the classes holds some classes of nearly every family, and a net trained on it
learns features its other half can use; the man-made half never sees a natural part, nor natural
ground, and the other way round.

Every function draws a whole batch at once: arrays are (N, H, W), per-image parameters (N, 1, 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

F = np.float32

MANMADE_PARTS = ("block", "frame", "windows", "stripes", "checker", "cross", "polygon", "ring")
NATURAL_PARTS = ("blob", "lobes", "fur", "spots", "mottle", "waves", "ripples", "crescent")
CLASSES_PER_FAMILY = 4  # a family is split between random halves of its superclass

# A small shared palette: classes of both superclasses draw colours from it, so colour is a
# low-level cue every class uses and no class owns a colour outright.
PALETTE = {
    "red": (0.85, 0.15, 0.12), "orange": (0.95, 0.55, 0.10), "yellow": (0.95, 0.88, 0.20),
    "green": (0.20, 0.65, 0.25), "teal": (0.10, 0.60, 0.60), "blue": (0.15, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.70), "pink": (0.95, 0.55, 0.70), "white": (0.93, 0.93, 0.90),
    "black": (0.10, 0.10, 0.12), "brown": (0.50, 0.32, 0.15), "grey": (0.55, 0.55, 0.55),
}
COLOUR_NAMES = tuple(PALETTE)
COLOURS = np.array([PALETTE[c] for c in COLOUR_NAMES], dtype=F)

WORDS = {  # for synset_words.txt and the class tree
    "block": "panel", "frame": "frame", "windows": "window grid", "stripes": "striped plate",
    "checker": "checkerboard", "cross": "cross", "polygon": "polygon", "ring": "ring",
    "blob": "shaded glow", "lobes": "lobed blob", "fur": "furry patch", "spots": "spotted hide",
    "mottle": "mottled patch", "waves": "wavy fibres", "ripples": "ripples", "crescent": "crescent",
}


@dataclass
class Part:
    kind: str
    colour: int            # index into COLOURS
    offset: tuple[float, float]  # centre in the object frame (units: half image widths)
    radius: float
    angle: float           # own rotation, radians
    aspect: float          # height / width for elongated parts
    freq: float            # stripes, checks, textures: cycles across the part
    sides: int             # polygon sides, lobe count, spot count


@dataclass
class Family:
    """A body plan shared by the classes of one kind: the primary and satellite part kinds."""
    manmade: bool
    primary: str
    satellite: str
    bearing: float         # where the satellite sits around the primary part, radians


@dataclass
class Recipe:
    """What makes one class: everything here is fixed per class (the high-level features)."""
    manmade: bool
    background: int
    parts: list[Part] = field(default_factory=list)

    def name(self) -> str:
        words = [f"{COLOUR_NAMES[x.colour]} {WORDS[x.kind]}" for x in self.parts]
        head = "man-made" if self.manmade else "natural"
        return f"{head}: {' with '.join(words)} on {COLOUR_NAMES[self.background]}"


def make_families(rng: np.random.Generator, manmade: bool, count: int) -> list[Family]:
    """`count` families of a superclass, each with its own primary kind (the kind names the family)."""
    pool = MANMADE_PARTS if manmade else NATURAL_PARTS
    if count > len(pool):
        raise ValueError(f"at most {len(pool)} families a superclass, asked for {count}")
    primaries = rng.choice(len(pool), size=count, replace=False)
    out = []
    for p in primaries:
        others = [k for k in pool if k != pool[p]]
        out.append(Family(manmade, pool[p], str(rng.choice(others)), float(rng.uniform(0, 2 * np.pi))))
    return out


def make_recipe(rng: np.random.Generator, family: Family) -> Recipe:
    """A class of a family: its colours, proportions and layout, and a third part of its own kind."""
    pool = MANMADE_PARTS if family.manmade else NATURAL_PARTS
    third = str(rng.choice([k for k in pool if k not in (family.primary, family.satellite)]))
    kinds = (family.primary, family.satellite, third)
    colours = rng.choice(len(COLOURS), size=len(kinds) + 1, replace=False)
    recipe = Recipe(manmade=family.manmade, background=int(colours[0]))
    # the satellite keeps near the family's bearing; the third part goes where the class puts it
    bearings = (0.0, family.bearing + rng.uniform(-0.6, 0.6), rng.uniform(0, 2 * np.pi))
    for i, kind in enumerate(kinds):
        primary = i == 0
        dist = 0.0 if primary else rng.uniform(0.45, 0.62)
        offset = (dist * np.cos(bearings[i]), dist * np.sin(bearings[i])) if not primary else \
            tuple(rng.uniform(-0.1, 0.1, 2))
        recipe.parts.append(Part(
            kind=kind, colour=int(colours[i + 1]), offset=(float(offset[0]), float(offset[1])),
            radius=float(rng.uniform(0.38, 0.5) if primary else rng.uniform(0.2, 0.28)),
            angle=float(rng.uniform(0, np.pi)), aspect=float(rng.uniform(0.45, 1.0)),
            freq=float(rng.uniform(2.0, 3.5)), sides=int(rng.integers(3, 7)),
        ))
    return recipe


# ---------------------------------------------------------------------------------------------
# Edges. A signed distance `sd` (negative inside) becomes an alpha mask: man-made parts get a
# one-pixel antialiased step, natural parts a sigmoid several pixels wide.

def hard(sd: np.ndarray, px: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - sd / px, 0.0, 1.0)


def soft(sd: np.ndarray, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip(sd / width, -30, 30)))


def _col(x: np.ndarray) -> np.ndarray:
    """Per-image values (N,) as (N, 1, 1) so they broadcast over the image."""
    return np.asarray(x, dtype=F)[:, None, None]


def _noise_field(a: np.ndarray, b: np.ndarray, f: np.ndarray, rng: np.random.Generator,
                 waves: int = 5) -> np.ndarray:
    """A smooth random field (about unit variance): a sum of random plane waves of frequency ~f."""
    n = a.shape[0]
    out = np.zeros_like(a)
    for _ in range(waves):
        theta = _col(rng.uniform(0, 2 * np.pi, n))
        k = f * _col(rng.uniform(0.7, 1.3, n))
        out += np.cos(k * (a * np.cos(theta) + b * np.sin(theta)) + _col(rng.uniform(0, 2 * np.pi, n)))
    return out * F(np.sqrt(2.0 / waves))


@dataclass
class Frame:
    """One part's coordinates for a batch: (a, b) in the part's own frame, polar (rho, ang), the
    radius r and texture frequency f (jittered per image), one pixel's size px, and the generator."""
    a: np.ndarray
    b: np.ndarray
    rho: np.ndarray
    ang: np.ndarray
    r: np.ndarray
    f: np.ndarray
    px: np.ndarray
    rng: np.random.Generator


Shape = tuple[np.ndarray, np.ndarray | None]   # alpha (N, H, W), shading (N, H, W) or None (flat)


# Man-made: straight edges, right angles, uniform colour, regular repetition.

def _block(p: Part, g: Frame) -> Shape:
    return hard(np.maximum(np.abs(g.a) - g.r, np.abs(g.b) - g.r * p.aspect), g.px), None


def _frame(p: Part, g: Frame) -> Shape:
    outer = np.maximum(np.abs(g.a) - g.r, np.abs(g.b) - g.r * max(p.aspect, 0.6))
    return hard(np.maximum(outer, -outer - 0.22 * g.r), g.px), None


def _windows(p: Part, g: Frame) -> Shape:
    body = hard(np.maximum(np.abs(g.a) - g.r, np.abs(g.b) - g.r * max(p.aspect, 0.6)), g.px)
    cell = np.pi / g.f  # window pitch; each window is a square of half the pitch, darker than the wall
    fa, fb = np.abs(np.mod(g.a, cell) - cell / 2), np.abs(np.mod(g.b, cell) - cell / 2)
    pane = hard(np.maximum(fa, fb) - cell * 0.27, g.px)
    return body, 1.0 - 0.6 * pane


def _stripes(p: Part, g: Frame) -> Shape:
    box = np.maximum(np.abs(g.a) - g.r, np.abs(g.b) - g.r * max(p.aspect, 0.7))
    return hard(box, g.px) * hard(-np.sin(g.f * g.a) / g.f, g.px), None


def _checker(p: Part, g: Frame) -> Shape:
    box = np.maximum(np.abs(g.a), np.abs(g.b)) - g.r
    return hard(box, g.px) * hard(-np.sin(g.f * g.a) * np.sin(g.f * g.b) / g.f, g.px), None


def _cross(p: Part, g: Frame) -> Shape:
    w, arm = g.r * 0.28, g.r
    sd = np.minimum(np.maximum(np.abs(g.a) - arm, np.abs(g.b) - w), np.maximum(np.abs(g.a) - w, np.abs(g.b) - arm))
    return hard(sd, g.px), None


def _polygon(p: Part, g: Frame) -> Shape:
    sector = 2 * np.pi / p.sides
    local = np.mod(g.ang, sector) - sector / 2
    return hard(g.rho * np.cos(local) - g.r * np.cos(sector / 2), g.px), None


def _ring(p: Part, g: Frame) -> Shape:
    return hard(np.abs(g.rho - g.r * 0.78) - g.r * 0.2, g.px), None


# Natural: curved and fractal contours, textures, shading gradients.

def _fractal_edge(p: Part, g: Frame, amp: float) -> np.ndarray:
    """A contour radius with detail at every scale: harmonics 2..9 with amplitudes falling as 1/k."""
    n = g.a.shape[0]
    edge = np.ones_like(g.rho)
    for k in range(2, 10):
        weight = (1.6 if k == p.sides else 1.0) * amp / k
        edge += weight * _col(g.rng.uniform(0.6, 1.0, n)) * np.sin(k * g.ang + _col(g.rng.uniform(0, 2 * np.pi, n)))
    return g.r * edge


def _blob(p: Part, g: Frame) -> Shape:
    d = np.sqrt((g.a / (0.8 * g.r)) ** 2 + (g.b / (0.8 * g.r * p.aspect)) ** 2)
    lit = 1.15 - 0.45 * np.clip(d, 0, 1) ** 2 + 0.25 * np.clip(g.a + g.b, -1, 1) / np.maximum(g.r, 0.2)
    return soft(d - 1.0, 0.12), np.clip(lit, 0.5, 1.3)


def _lobes(p: Part, g: Frame) -> Shape:
    edge = _fractal_edge(p, g, 0.45)
    return soft(g.rho - edge, 0.03), 1.1 - 0.35 * np.clip(g.rho / np.maximum(edge, 0.05), 0, 1)


def _fur(p: Part, g: Frame) -> Shape:
    body = soft(np.sqrt((g.a / g.r) ** 2 + (g.b / (g.r * max(p.aspect, 0.6))) ** 2) - 1.0, 0.08)
    flow = g.b + 0.25 * g.r * _noise_field(g.a, g.b, g.f * 0.4, g.rng, 3)   # fibres bend with the flow
    strands = 0.5 + 0.5 * np.sin(2.2 * g.f * flow)
    return body, 0.6 + 0.6 * strands


def _spots(p: Part, g: Frame) -> Shape:
    n = g.a.shape[0]
    body = soft(g.rho - _fractal_edge(p, g, 0.12), 0.05)   # an irregular hide, spots darker on it
    count = 6 + 2 * p.sides
    cr = g.r[:, :, 0] * np.sqrt(g.rng.uniform(0, 1, (n, count)))
    ct = g.rng.uniform(0, 2 * np.pi, (n, count))
    cx = (cr * np.cos(ct))[:, :, None, None].astype(F)
    cy = (cr * np.sin(ct))[:, :, None, None].astype(F)
    d = np.sqrt(((g.a[:, None] - cx) ** 2 + (g.b[:, None] - cy) ** 2).min(axis=1))
    wobble = 0.03 * _noise_field(g.a, g.b, g.f * 1.5, g.rng, 3)
    spot = soft(d + wobble - g.r * (0.15 + 0.05 * p.aspect), 0.02)
    return body, 1.1 - 0.7 * spot


def _mottle(p: Part, g: Frame) -> Shape:
    envelope = soft(g.rho - _fractal_edge(p, g, 0.25), 0.05)
    field_ = _noise_field(g.a, g.b, g.f * 0.7, g.rng) + 0.5 * _noise_field(g.a, g.b, g.f * 1.4, g.rng)
    return envelope, 0.85 + 0.3 * np.tanh(field_)


def _waves(p: Part, g: Frame) -> Shape:
    envelope = soft(g.rho - g.r, 0.1)
    wobble = 0.35 * g.r * np.sin(g.f * 0.5 * g.a + _col(g.rng.uniform(0, 2 * np.pi, g.a.shape[0])))
    return envelope * (0.5 + 0.5 * np.sin(g.f * (g.b + wobble))) ** 2, None


def _ripples(p: Part, g: Frame) -> Shape:
    warped = g.rho * (1 + 0.12 * np.sin(3 * g.ang + _col(g.rng.uniform(0, 2 * np.pi, g.a.shape[0]))))
    envelope = soft(g.rho - g.r, 0.1)
    return envelope * (0.5 + 0.5 * np.cos(g.f * warped + _col(g.rng.uniform(0, 2 * np.pi, g.a.shape[0])))) ** 2, None


def _crescent(p: Part, g: Frame) -> Shape:
    outer = soft(g.rho - g.r, 0.04)
    inner = soft(np.hypot(g.a - 0.45 * g.r, g.b - 0.1 * g.r) - 0.8 * g.r, 0.04)
    return outer * (1 - inner), 1.15 - 0.4 * np.clip(g.rho / np.maximum(g.r, 0.05), 0, 1)


DRAW: dict[str, Callable[[Part, Frame], Shape]] = {
    "block": _block, "frame": _frame, "windows": _windows, "stripes": _stripes, "checker": _checker,
    "cross": _cross, "polygon": _polygon, "ring": _ring,
    "blob": _blob, "lobes": _lobes, "fur": _fur, "spots": _spots, "mottle": _mottle, "waves": _waves,
    "ripples": _ripples, "crescent": _crescent,
}


def draw_part(part: Part, a: np.ndarray, b: np.ndarray, px: np.ndarray, rng: np.random.Generator) -> Shape:
    """(alpha, shading) of one part for a batch; (a, b) are the part's own coordinates."""
    if part.kind not in DRAW:
        raise ValueError(f"unknown part kind {part.kind!r}")
    n = a.shape[0]
    r = part.radius * _col(rng.uniform(0.85, 1.15, n))
    # radians per unit; periods do not shrink with small parts, which would alias at low resolution
    f = part.freq * _col(rng.uniform(0.9, 1.1, n)) * np.pi / np.maximum(r, 0.4)
    return DRAW[part.kind](part, Frame(a, b, np.hypot(a, b), np.arctan2(b, a), r, f, px, rng))


def _jitter_colour(base: np.ndarray, rng: np.random.Generator, swap: float) -> np.ndarray:
    """(N, 3) colours: the class colour, shaded and tinted, sometimes swapped for any colour."""
    n = base.shape[0]
    swapped = rng.random(n) < swap
    base = np.where(swapped[:, None], COLOURS[rng.integers(0, len(COLOURS), n)], base)
    shade = rng.uniform(0.75, 1.15, (n, 1))
    return np.clip(base * shade + rng.normal(0, 0.06, (n, 3)), 0, 1).astype(F)


def background(manmade: bool, colour: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W, 3) backgrounds. Shared: the class's colour (often swapped) under a lighting gradient.
    Man-made: flat surfaces meeting at a straight seam (a wall and a floor). Natural: textured ground."""
    n = x.shape[0]
    bg = _jitter_colour(np.repeat(COLOURS[colour][None], n, 0), rng, swap=0.6)
    tilt = _col(rng.uniform(0, 2 * np.pi, n))
    light = 0.85 + 0.15 * (x * np.cos(tilt) + y * np.sin(tilt))
    if manmade:
        theta = _col(rng.uniform(-0.4, 0.4, n) + np.pi / 2 * rng.integers(0, 2, n))
        seam = x * np.cos(theta) + y * np.sin(theta) - _col(rng.uniform(-0.7, 0.7, n))
        texture = 1.0 - _col(rng.uniform(0.15, 0.35, n)) * hard(seam, F(2.0 / x.shape[-1]))
    else:
        texture = 0.9 + 0.12 * np.tanh(_noise_field(x, y, _col(np.full(n, 9.0)), rng, 6))
    return bg[:, None, None, :] * (light * texture)[..., None]


def _clutter(manmade: bool, rng: np.random.Generator) -> Part:
    """A small part of the superclass's own vocabulary in a random place (scene clutter)."""
    pool = MANMADE_PARTS if manmade else NATURAL_PARTS
    spot = rng.uniform(-0.75, 0.75, 2)
    return Part(str(rng.choice(pool)), int(rng.integers(len(COLOURS))), (float(spot[0]), float(spot[1])),
                0.15, float(rng.uniform(0, np.pi)), 0.8, 2.5, int(rng.integers(3, 7)))


def render(recipe: Recipe, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n images of one class as uint8 (n, size, size, 3)."""
    g = (np.arange(size, dtype=F) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(g, g, indexing="ij")
    x, y = np.repeat(x[None], n, 0), np.repeat(y[None], n, 0)
    img = background(recipe.manmade, recipe.background, x, y, rng)

    # The object frame: random position, scale and rotation per image.
    tx, ty = _col(rng.uniform(-0.2, 0.2, n)), _col(rng.uniform(-0.2, 0.2, n))
    s = _col(rng.uniform(0.75, 1.2, n))
    rot = _col(rng.uniform(-0.5, 0.5, n))  # about +-30 degrees
    u = (np.cos(rot) * (x - tx) + np.sin(rot) * (y - ty)) / s
    v = (-np.sin(rot) * (x - tx) + np.cos(rot) * (y - ty)) / s
    px = (2.0 / size) / s

    # One clutter part per batch (callers render small batches), in about half the images; it is
    # drawn first, so the object may cover it.
    clutter = _clutter(recipe.manmade, rng)
    for i, part in enumerate([clutter] + list(recipe.parts)):
        jit = rng.normal(0, 0.05, (2, n))
        pa = u - _col(part.offset[0] + jit[0])
        pb = v - _col(part.offset[1] + jit[1])
        phi = _col(part.angle + rng.normal(0, 0.15, n))
        a = (np.cos(phi) * pa + np.sin(phi) * pb).astype(F)
        b = (-np.sin(phi) * pa + np.cos(phi) * pb).astype(F)
        alpha, shade = draw_part(part, a, b, px, rng)
        if i == 0:
            alpha = alpha * _col(rng.random(n) < 0.5)
        # colour is a weak cue, as in ImageNet, where most classes come in many colours
        col = _jitter_colour(np.repeat(COLOURS[part.colour][None], n, 0), rng, swap=0.5)
        paint = col[:, None, None, :] if shade is None else col[:, None, None, :] * shade[..., None]
        alpha = alpha[..., None] * F(0.95)
        img += alpha * (paint - img)

    img += rng.standard_normal(img.shape, dtype=F) * F(0.035)  # sensor noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
