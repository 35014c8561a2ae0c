"""Vectorised drawing for the synthetic dataset: class recipes and batch rendering.

The dataset mirrors the paper's structure in miniature:
  - low level (shared by all classes): edges, colours, orientations, the background and noise;
  - mid level (shared within a superclass): a vocabulary of part kinds, hard-edged geometric
    ones for "man-made" classes and soft organic ones for "natural" classes;
  - high level (one class): which parts, their parameters, their layout and their colours.

Every function draws a whole batch at once: arrays are (N, H, W), per-image parameters (N, 1, 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

F = np.float32

MANMADE_PARTS = ("block", "stripes", "checker", "polygon", "ring", "cross")
NATURAL_PARTS = ("blob", "lobes", "mottle", "spots", "waves", "ripples")

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

WORDS = {  # for synset_words.txt
    "block": "panel", "stripes": "striped plate", "checker": "checkerboard", "polygon": "polygon",
    "ring": "ring", "cross": "cross", "blob": "glow", "lobes": "lobed blob", "mottle": "mottled patch",
    "spots": "spotted patch", "waves": "wavy fibres", "ripples": "ripples",
}


@dataclass
class Part:
    kind: str
    colour: int            # index into COLOURS
    offset: tuple[float, float]  # centre in the object frame (units: half image widths)
    radius: float
    angle: float           # own rotation, radians
    aspect: float          # height / width for elongated parts
    freq: float            # stripes, checks, waves, ripples: cycles across the part
    sides: int             # polygon sides, lobes count, spot count


@dataclass
class Recipe:
    """What makes one class: everything here is fixed per class (the high-level features)."""
    manmade: bool
    background: int
    parts: list[Part] = field(default_factory=list)

    def name(self) -> str:
        p = self.parts
        words = [f"{COLOUR_NAMES[x.colour]} {WORDS[x.kind]}" for x in p]
        head = "man-made" if self.manmade else "natural"
        return f"{head}: {' with '.join(words)} on {COLOUR_NAMES[self.background]}"


def make_recipe(rng: np.random.Generator, manmade: bool, kinds: tuple[str, ...]) -> Recipe:
    """A class: a large primary part, one or two smaller satellites in a fixed layout."""
    colours = rng.choice(len(COLOURS), size=len(kinds) + 1, replace=False)
    recipe = Recipe(manmade=manmade, background=int(colours[0]))
    for i, kind in enumerate(kinds):
        primary = i == 0
        if primary:
            offset = tuple(rng.uniform(-0.15, 0.15, 2))
        else:  # satellites sit at a class-specific bearing around the primary part
            bearing = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.4, 0.6)
            offset = (dist * np.cos(bearing), dist * np.sin(bearing))
        recipe.parts.append(Part(
            kind=kind, colour=int(colours[i + 1]), offset=(float(offset[0]), float(offset[1])),
            radius=float(rng.uniform(0.38, 0.55) if primary else rng.uniform(0.2, 0.3)),
            angle=float(rng.uniform(0, np.pi)), aspect=float(rng.uniform(0.45, 1.0)),
            freq=float(rng.uniform(2.0, 4.5)), sides=int(rng.integers(3, 8)),
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


# draw_part and render are long on purpose: each is one vectorised drawing recipe (shape by shape,
# then the layers of an image), and a change to the images is a change to GENERATOR_VERSION anyway.
def draw_part(part: Part, a: np.ndarray, b: np.ndarray, px: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Alpha (N, H, W) of one part; (a, b) are the part's own coordinates, px one pixel's size."""
    n = a.shape[0]
    r = part.radius * _col(rng.uniform(0.85, 1.15, n))
    rho = np.hypot(a, b)
    ang = np.arctan2(b, a)
    # radians per unit; periods do not shrink with small parts, which would alias at 64 px
    f = part.freq * _col(rng.uniform(0.9, 1.1, n)) * np.pi / np.maximum(r, 0.4)
    k = part.kind
    if k == "block":
        return hard(np.maximum(np.abs(a) - r, np.abs(b) - r * part.aspect), px)
    if k == "stripes":
        box = np.maximum(np.abs(a) - r, np.abs(b) - r * max(part.aspect, 0.7))
        return hard(box, px) * hard(-np.sin(f * a) / f, px)
    if k == "checker":
        box = np.maximum(np.abs(a), np.abs(b)) - r
        return hard(box, px) * hard(-np.sin(f * a) * np.sin(f * b) / f, px)
    if k == "polygon":
        sector = 2 * np.pi / part.sides
        local = np.mod(ang, sector) - sector / 2
        return hard(rho * np.cos(local) - r * np.cos(sector / 2), px)
    if k == "ring":
        return hard(np.abs(rho - r * 0.8) - r * 0.18, px)
    if k == "cross":
        w, arm = r * 0.25, r
        sd = np.minimum(np.maximum(np.abs(a) - arm, np.abs(b) - w),
                        np.maximum(np.abs(a) - w, np.abs(b) - arm))
        return hard(sd, px)
    if k == "blob":
        return np.exp(-0.5 * ((a / (0.7 * r)) ** 2 + (b / (0.7 * r * part.aspect)) ** 2))
    if k == "lobes":
        phase = _col(rng.uniform(0, 2 * np.pi, n))
        edge = r * (1 + 0.22 * np.sin(part.sides * ang + phase) + 0.1 * np.sin((part.sides + 3) * ang))
        return soft(rho - edge, 0.06)
    envelope = soft(rho - r, 0.1)
    if k == "mottle":  # smooth noise field: a sum of random low-frequency waves
        field_ = np.zeros_like(a)
        for _ in range(5):
            theta = _col(rng.uniform(0, 2 * np.pi, n))
            field_ += np.cos(f * 0.6 * (a * np.cos(theta) + b * np.sin(theta))
                             + _col(rng.uniform(0, 2 * np.pi, n)))
        return envelope * soft(-field_, 0.35)
    if k == "spots":  # cellular texture: soft discs at random points inside the part
        count = 4 + 2 * part.sides
        cr = r[:, :, 0] * np.sqrt(rng.uniform(0, 1, (n, count)))
        ct = rng.uniform(0, 2 * np.pi, (n, count))
        cx = (cr * np.cos(ct))[:, :, None, None].astype(F)
        cy = (cr * np.sin(ct))[:, :, None, None].astype(F)
        d2 = ((a[:, None] - cx) ** 2 + (b[:, None] - cy) ** 2).min(axis=1)
        size = r * 0.18 * (1.0 + 0.3 * part.aspect)
        return soft(np.sqrt(d2) - size, 0.04) * soft(rho - 1.15 * r, 0.1)
    if k == "waves":
        wobble = 0.35 * r * np.sin(f * 0.5 * a + _col(rng.uniform(0, 2 * np.pi, n)))
        return envelope * (0.5 + 0.5 * np.sin(f * (b + wobble))) ** 2
    if k == "ripples":
        return envelope * (0.5 + 0.5 * np.cos(f * rho + _col(rng.uniform(0, 2 * np.pi, n)))) ** 2
    raise ValueError(f"unknown part kind {k!r}")


def _jitter_colour(base: np.ndarray, rng: np.random.Generator, swap: float) -> np.ndarray:
    """(N, 3) colours: the class colour, shaded and tinted, sometimes swapped for any colour."""
    n = base.shape[0]
    swapped = rng.random(n) < swap
    base = np.where(swapped[:, None], COLOURS[rng.integers(0, len(COLOURS), n)], base)
    shade = rng.uniform(0.75, 1.15, (n, 1))
    return np.clip(base * shade + rng.normal(0, 0.06, (n, 3)), 0, 1).astype(F)


def render(recipe: Recipe, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n images of one class as uint8 (n, size, size, 3)."""
    g = (np.arange(size, dtype=F) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(g, g, indexing="ij")
    x, y = x[None], y[None]

    # Background (shared by all classes): class colour with a gentle gradient and mottling.
    bg = _jitter_colour(np.repeat(COLOURS[recipe.background][None], n, 0), rng, swap=0.5)
    tilt = _col(rng.uniform(0, 2 * np.pi, n))
    grad = 0.85 + 0.15 * (x * np.cos(tilt) + y * np.sin(tilt))
    img = bg[:, None, None, :] * grad[..., None]

    # The object frame: random position, scale and rotation per image.
    tx, ty = _col(rng.uniform(-0.2, 0.2, n)), _col(rng.uniform(-0.2, 0.2, n))
    s = _col(rng.uniform(0.75, 1.2, n))
    rot = _col(rng.uniform(-0.5, 0.5, n))  # about +-30 degrees
    u = (np.cos(rot) * (x - tx) + np.sin(rot) * (y - ty)) / s
    v = (-np.sin(rot) * (x - tx) + np.cos(rot) * (y - ty)) / s
    px = (2.0 / size) / s

    parts = list(recipe.parts)
    # A distractor: a small part of any kind, from either superclass, in a random place, so
    # that no single part kind or corner of the image gives the class away.
    # One kind per batch (callers render small batches), present in about half the images.
    kind = str(rng.choice(MANMADE_PARTS + NATURAL_PARTS))
    spot = rng.uniform(-0.7, 0.7, 2)
    parts.append(Part(kind, int(rng.integers(len(COLOURS))), (float(spot[0]), float(spot[1])),
                      0.16, float(rng.uniform(0, np.pi)), 0.8, 2.5, int(rng.integers(3, 8))))

    for i, part in enumerate(parts):
        jit = rng.normal(0, 0.05, (2, n))
        pa = u - _col(part.offset[0] + jit[0])
        pb = v - _col(part.offset[1] + jit[1])
        phi = _col(part.angle + rng.normal(0, 0.15, n))
        a = np.cos(phi) * pa + np.sin(phi) * pb
        b = -np.sin(phi) * pa + np.cos(phi) * pb
        alpha = draw_part(part, a.astype(F), b.astype(F), px, rng)
        if i == len(parts) - 1:
            alpha = alpha * _col(rng.random(n) < 0.5)
        col = _jitter_colour(np.repeat(COLOURS[part.colour][None], n, 0), rng, swap=0.25)
        alpha = alpha[..., None] * F(0.95)
        img += alpha * (col[:, None, None, :] - img)

    img += rng.standard_normal(img.shape, dtype=F) * F(0.035)  # sensor noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
