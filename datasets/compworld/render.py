"""CompWorld: a small procedurally generated world of coloured shapes with compositional captions.

Pure Python + PIL + numpy (no torch import), deterministic.

World
-----
Four independent attributes (``ATTRIBUTES``)::

    colour     : red orange yellow green cyan blue purple pink           (8)
    shape      : circle square triangle star cross diamond heart moon   (8)
    size       : small large                                             (2)
    background : plain striped dotted checkered                          (4)

8 * 8 * 2 * 4 = 512 attribute combinations (``all_combinations()``).

Classes
-------
A class is a (colour, shape) pair (``CLASS_ATTRIBUTES``), so there are 64 classes named like
``"red circle"`` (``class_name``); size and background are nuisance attributes
(``NUISANCE_ATTRIBUTES``) that vary inside a class and that captions still mention.

Base / new split
----------------
``base_new_split(seed)`` is a permuted Latin square: every colour and every shape appears in
exactly ``n_new_per_row`` new classes and ``8 - n_new_per_row`` base ("seen") classes, so each
new class combines a colour and a shape that are both seen in pretraining, only never together.

Rendering
---------
``render(combo, index, size, seed)`` draws a scene in size-independent normalised coordinates
and supersamples it, so the same (combo, index, seed) gives the same scene at 32 or 224 pixels.
Per-instance nuisance (position, rotation, object scale, colour jitter, background tone,
texture phase/angle/period, pixel noise) comes from a random stream seeded by
(seed, combo, index) only, so rendering is reproducible across processes and machines.

Seed streams: the pretraining script renders its training images with seed ``10_000 + S`` and its
evaluation images with ``20_000 + S`` (see ``PRETRAIN_SEED_OFFSET``/``PRETRAIN_EVAL_SEED_OFFSET``);
dataset images written with ``write_image_folder(seed < 10_000)`` are therefore never pretraining
images.
"""
import math
import os
import zlib
from collections import namedtuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ATTRIBUTES", "CLASS_ATTRIBUTES", "NUISANCE_ATTRIBUTES", "COLOURS_RGB", "Combo",
    "CAPTION_TEMPLATES", "PARTIAL_CAPTION_TEMPLATES", "PRETRAIN_SEED_OFFSET",
    "PRETRAIN_EVAL_SEED_OFFSET", "as_combo", "all_combinations", "all_classes", "class_of",
    "class_name", "class_folder", "parse_class", "combos_of_classes", "base_new_split", "render",
    "caption", "all_captions", "caption_is_true", "write_image_folder", "Domain",
]

ATTRIBUTES = {
    "colour": ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"],
    "shape": ["circle", "square", "triangle", "star", "cross", "diamond", "heart", "moon"],
    "size": ["small", "large"],
    "background": ["plain", "striped", "dotted", "checkered"],
}
CLASS_ATTRIBUTES = ("colour", "shape")
NUISANCE_ATTRIBUTES = ("size", "background")

COLOURS_RGB = {
    "red": (220, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 225, 30),
    "green": (35, 165, 55),
    "cyan": (30, 205, 215),
    "blue": (35, 65, 225),
    "purple": (140, 45, 195),
    "pink": (250, 130, 195),
}

PRETRAIN_SEED_OFFSET = 10_000
PRETRAIN_EVAL_SEED_OFFSET = 20_000

Combo = namedtuple("Combo", list(ATTRIBUTES))

# Templates that mention both class attributes (colour and shape), some also the nuisance ones.
CAPTION_TEMPLATES = [
    "a photo of a {size} {colour} {shape} on a {background} background.",
    "a photo of a {colour} {shape}.",
    "a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} on a {background} background.",
    "a picture of a {colour} {shape}.",
    "a drawing of a {size} {colour} {shape}.",
    "a {size} {colour} {shape} in front of a {background} pattern.",
    "there is a {colour} {shape} on a {background} background.",
    "a {shape} coloured {colour}.",
    "a {size} {shape} that is {colour}.",
    "a photo of a {colour} {shape} on a {background} background.",
]
# Templates that mention a subset of the attributes (not always both class attributes).
PARTIAL_CAPTION_TEMPLATES = [
    "a photo of a {colour} shape.",
    "a {colour} object.",
    "something {colour} on a {background} background.",
    "a photo of a {shape}.",
    "a {shape}.",
    "a {size} {shape}.",
    "a {shape} on a {background} background.",
    "a {size} {colour} thing.",
]


# ----------------------------------------------------------------------------------------------
# combos, classes, split
# ----------------------------------------------------------------------------------------------
def as_combo(combo):
    """A ``Combo`` from a Combo, a dict with the four attributes, or a 4-tuple in ATTRIBUTES order."""
    if isinstance(combo, Combo):
        c = combo
    elif isinstance(combo, dict):
        c = Combo(**{k: combo[k] for k in ATTRIBUTES})
    else:
        c = Combo(*combo)
    for k, v in c._asdict().items():
        if v not in ATTRIBUTES[k]:
            raise ValueError(f"unknown {k} {v!r}; valid: {ATTRIBUTES[k]}")
    return c


def all_combinations():
    """All 512 attribute combinations, as ``Combo`` tuples, in a fixed order."""
    out = []
    for colour in ATTRIBUTES["colour"]:
        for shape in ATTRIBUTES["shape"]:
            for size in ATTRIBUTES["size"]:
                for bg in ATTRIBUTES["background"]:
                    out.append(Combo(colour, shape, size, bg))
    return out


def all_classes():
    """All 64 classes as (colour, shape) tuples, in a fixed order."""
    return [(c, s) for c in ATTRIBUTES["colour"] for s in ATTRIBUTES["shape"]]


def parse_class(cls):
    """(colour, shape) from a class tuple, a full combo, a class name ("red circle") or a class
    folder name ("red_circle")."""
    if isinstance(cls, str):
        parts = cls.replace("_", " ").split()
        if len(parts) != 2:
            raise ValueError(f"not a class name: {cls!r}")
        cls = tuple(parts)
    if isinstance(cls, dict):
        cls = (cls["colour"], cls["shape"])
    cls = tuple(cls)
    if len(cls) == 4:
        cls = cls[:2]
    if len(cls) != 2 or cls[0] not in ATTRIBUTES["colour"] or cls[1] not in ATTRIBUTES["shape"]:
        raise ValueError(f"not a CompWorld class: {cls!r}")
    return cls


def class_of(combo):
    """The (colour, shape) class of a combo (or of a class, name or folder name)."""
    return parse_class(combo)


def class_name(combo):
    """Short class phrase used as the class name, e.g. ``"red circle"``."""
    colour, shape = parse_class(combo)
    return f"{colour} {shape}"


def class_folder(combo):
    """Folder name of a class, without spaces, e.g. ``"red_circle"``."""
    colour, shape = parse_class(combo)
    return f"{colour}_{shape}"


def combos_of_classes(classes):
    """All full combos (every size and background) of the given classes."""
    classes = {parse_class(c) for c in classes}
    return [c for c in all_combinations() if (c.colour, c.shape) in classes]


def latin_levels(seed=0):
    """{(colour, shape): level in 0..7}: a permuted Latin square drawn from ``seed``. Each
    level holds every colour once and every shape once, so any set of levels is balanced."""
    nc, ns = len(ATTRIBUTES["colour"]), len(ATTRIBUTES["shape"])
    assert nc == ns, "the Latin-square split needs as many colours as shapes"
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B1]))
    p = rng.permutation(nc)
    q = rng.permutation(ns)
    return {(colour, shape): int((p[i] + q[j]) % nc)
            for i, colour in enumerate(ATTRIBUTES["colour"]) for j, shape in enumerate(ATTRIBUTES["shape"])}


def base_new_split(seed=0, n_new_per_row=3):
    """Split the 64 classes into (base, new) lists of (colour, shape) tuples.

    Class (c, s) is new iff its Latin-square level (``latin_levels``) is < ``n_new_per_row``.
    So every colour and every shape is in exactly ``n_new_per_row`` new classes and
    ``8 - n_new_per_row`` base classes: each new class is a composition of a colour and a
    shape both seen in the base set, never together. Default 3 -> 40 base and 24 new classes.
    """
    nc = len(ATTRIBUTES["colour"])
    if not 1 <= n_new_per_row < nc:
        raise ValueError(f"n_new_per_row must be in [1, {nc - 1}]")
    base, new = [], []
    for cls, level in latin_levels(seed).items():
        (new if level < n_new_per_row else base).append(cls)
    return base, new


# ----------------------------------------------------------------------------------------------
# captions
# ----------------------------------------------------------------------------------------------
def _fill(template, combo):
    return template.format(**combo._asdict())


def caption(combo, rng=None, partial=False, p_partial=0.3):
    """A caption of ``combo`` drawn from the templates with ``rng`` (a ``numpy.random.Generator``,
    a ``random.Random`` or an int seed).

    With ``partial=False`` (default) the caption always names the colour and the shape (the
    class); with ``partial=True`` it is, with probability ``p_partial``, one that mentions only a
    subset of the attributes (used for pretraining)."""
    combo = as_combo(combo)
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(rng)
    rand = rng.random if hasattr(rng, "random") else rng.rand
    if partial and rand() < p_partial:
        pool = PARTIAL_CAPTION_TEMPLATES
    else:
        pool = CAPTION_TEMPLATES
    if hasattr(rng, "integers"):
        k = int(rng.integers(len(pool)))
    else:
        k = int(rng.randrange(len(pool)))
    return _fill(pool[k], combo)


def all_captions(combo, partial=False):
    """Every caption of ``combo`` (full templates, plus partial ones if ``partial``)."""
    combo = as_combo(combo)
    pool = CAPTION_TEMPLATES + (PARTIAL_CAPTION_TEMPLATES if partial else [])
    return [_fill(t, combo) for t in pool]


def caption_is_true(text, combo):
    """Whether every attribute word in ``text`` matches ``combo`` (a caption of another combo
    that happens to be true of this one, e.g. "a red object." for any red combo)."""
    combo = as_combo(combo)
    words = set(text.replace(".", " ").replace(",", " ").split())
    for k, values in ATTRIBUTES.items():
        for v in values:
            if v in words and v != getattr(combo, k):
                return False
    return True


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------
def _combo_key(combo):
    return zlib.crc32("|".join(combo).encode("utf-8"))


def _instance_rng(combo, index, seed):
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _combo_key(combo),
                                                         int(index) & 0xFFFFFFFF, 0xC0]))


def _regular_polygon(n, r, phase=-math.pi / 2):
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def _shape_polygons(shape):
    """Shape outline(s) in unit coordinates (bounding radius ~1, y pointing down).

    Returns a list of (points, fill) pairs drawn in order (fill 255 adds, 0 cuts out), or the
    string "ellipse" for circles."""
    if shape == "circle":
        return [("ellipse", (0.0, 0.0, 0.95), 255)]
    if shape == "square":
        a = 0.75
        return [([(-a, -a), (a, -a), (a, a), (-a, a)], 255)]
    if shape == "triangle":
        pts = _regular_polygon(3, 1.0)
        return [([(x, y + 0.2) for x, y in pts], 255)]
    if shape == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((r * math.cos(a), r * math.sin(a) + 0.08))
        return [(pts, 255)]
    if shape == "cross":
        a, b = 0.9, 0.3
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
               (-a, b), (-a, -b), (-b, -b)]
        return [(pts, 255)]
    if shape == "diamond":
        return [([(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)], 255)]
    if shape == "heart":
        pts = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -(y + 2.5) / 17.0))
        return [(pts, 255)]
    if shape == "moon":
        return [("ellipse", (0.0, 0.0, 0.95), 255), ("ellipse", (0.45, -0.2, 0.8), 0)]
    raise ValueError(f"unknown shape {shape!r}")


def _rotate(points, angle):
    ca, sa = math.cos(angle), math.sin(angle)
    return [(x * ca - y * sa, x * sa + y * ca) for x, y in points]


def _shape_mask(shape, cx, cy, radius, angle, n):
    """Antialiasing-ready L mask (n x n) of a shape centred at (cx, cy) (fractions of the side)."""
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    for item in _shape_polygons(shape):
        if item[0] == "ellipse":
            _, (ex, ey, er), fill = item
            (ex, ey), = _rotate([(ex, ey)], angle)
            x0, y0 = (cx + (ex - er) * radius) * n, (cy + (ey - er) * radius) * n
            x1, y1 = (cx + (ex + er) * radius) * n, (cy + (ey + er) * radius) * n
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            pts, fill = item
            pts = [((cx + x * radius) * n, (cy + y * radius) * n) for x, y in _rotate(pts, angle)]
            draw.polygon(pts, fill=fill)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _background(kind, rng, n):
    """Grey-toned textured background, float32 (n, n, 3) in [0, 1]."""
    base = rng.uniform(0.38, 0.62)
    tint = rng.uniform(-0.03, 0.03, size=3)
    contrast = rng.uniform(0.16, 0.26) * (1 if rng.random() < 0.5 else -1)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(0.12, 0.2)  # fraction of the image side
    phase = rng.uniform(0, 1, size=2)
    ys, xs = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n
    if kind == "plain":
        level = np.zeros((n, n), np.float32)
    elif kind == "striped":
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / period + phase[0]
        level = ((u % 1.0) < 0.5).astype(np.float32)
    elif kind == "dotted":
        a2 = angle / 2  # any grid orientation within +-45 degrees is fine
        u = (xs * math.cos(a2) + ys * math.sin(a2)) / period + phase[0]
        v = (-xs * math.sin(a2) + ys * math.cos(a2)) / period + phase[1]
        du, dv = (u % 1.0) - 0.5, (v % 1.0) - 0.5
        level = ((du * du + dv * dv) < 0.22 ** 2).astype(np.float32)
    elif kind == "checkered":
        a2 = angle / 2
        p2 = period * 1.3
        u = (xs * math.cos(a2) + ys * math.sin(a2)) / p2 + phase[0]
        v = (-xs * math.sin(a2) + ys * math.cos(a2)) / p2 + phase[1]
        level = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    else:
        raise ValueError(f"unknown background {kind!r}")
    grey = base + contrast * (level - 0.5) if kind != "plain" else np.full((n, n), base, np.float32)
    return np.clip(grey[..., None] + tint[None, None, :], 0, 1).astype(np.float32)


def _supersample(size):
    return max(2, int(math.ceil(160 / size)))


class Domain(namedtuple("Domain", ["hue_shift", "saturation", "distractors", "blur", "class_hue"])):
    """How a downstream "camera" renders the world, relative to the pretraining images.

    hue_shift:   degrees added to every object colour's hue (a white-balance shift);
    saturation:  multiplier of the object colour's saturation (1 keeps it);
    distractors: number of small grey shapes of other kinds scattered behind the object;
    blur:        Gaussian blur radius as a fraction of the image side (0 = sharp);
    class_hue:   degrees of a hue shift of each class's own (``class_hue_offset``): the
                 camera renders each (colour, shape) pair a little off in its own way.
    ``Domain()`` is the pretraining domain: ``render`` then draws exactly what it always drew.
    """

    __slots__ = ()

    def __new__(cls, hue_shift=0.0, saturation=1.0, distractors=0, blur=0.0, class_hue=0.0):
        return super().__new__(cls, float(hue_shift), float(saturation), int(distractors), float(blur),
                               float(class_hue))

    @property
    def is_identity(self):
        return self == Domain()


def class_hue_offset(combo, degrees):
    """The hue shift (degrees) of a class under ``Domain(class_hue=degrees)``: +degrees or
    -degrees, fixed per (colour, shape) pair by a hash of its name."""
    colour, shape = combo[0], combo[1]
    return degrees if zlib.crc32(f"hue|{colour}|{shape}".encode()) % 2 else -degrees


def _shift_colour(rgb, hue_shift, saturation):
    import colorsys
    h, s, v = colorsys.rgb_to_hsv(*[float(x) for x in rgb])
    r, g, b = colorsys.hsv_to_rgb((h + hue_shift / 360.0) % 1.0, min(1.0, s * saturation), v)
    return np.array([r, g, b], np.float32)


def _draw_distractors(img, combo, domain, rng, n):
    """Grey shapes (not the class shape, half the object's size or less) on the background.
    They come from their own random stream, so the object's scene is the same as without."""
    others = [s for s in ATTRIBUTES["shape"] if s != combo.shape]
    for _ in range(domain.distractors):
        shape = others[int(rng.integers(len(others)))]
        r = rng.uniform(0.08, 0.13)
        cx, cy = rng.uniform(r, 1 - r, size=2)
        grey = rng.uniform(0.25, 0.75)
        m = _shape_mask(shape, cx, cy, r, math.radians(rng.uniform(-30, 30)), n)[..., None]
        img = img * (1.0 - m) + grey * m
    return img


def render(combo, index=0, size=64, seed=0, domain=None):
    """Render one instance of ``combo`` as an RGB ``PIL.Image`` of ``size`` x ``size`` pixels.

    Deterministic in (combo, index, seed); different ``index`` gives a different instance
    (position, rotation, object scale, colour jitter, background tone and texture phase, noise).
    The scene does not depend on ``size`` (only the pixel noise does). ``domain`` (a
    ``Domain``) renders the scene as a shifted camera would; its randomness (distractors)
    comes from a stream of its own, so the object is placed as in the unshifted image."""
    combo = as_combo(combo)
    domain = domain or Domain()
    size = int(size)
    if size < 8:
        raise ValueError("size must be at least 8 pixels")
    rng = _instance_rng(combo, index, seed)
    # scene parameters (drawn in a fixed order, independent of size)
    if combo.size == "small":
        radius = rng.uniform(0.16, 0.2)
    else:
        radius = rng.uniform(0.29, 0.35)
    margin = 0.03
    free = 0.5 - radius - margin
    cx = 0.5 + rng.uniform(-free, free)
    cy = 0.5 + rng.uniform(-free, free)
    angle = math.radians(rng.uniform(-18, 18))
    rgb = np.array(COLOURS_RGB[combo.colour], np.float32) / 255.0
    rgb = np.clip(rgb + rng.uniform(-0.06, 0.06, size=3) + rng.uniform(-0.05, 0.05), 0, 1)
    bg_rng = np.random.default_rng(rng.integers(2 ** 32))
    noise_seed = int(rng.integers(2 ** 32))
    noise_sigma = rng.uniform(0.005, 0.025)

    n = size * _supersample(size)
    bg = _background(combo.background, bg_rng, n)
    if domain.distractors:
        dom_rng = np.random.default_rng(np.random.SeedSequence(
            [int(seed) & 0xFFFFFFFF, _combo_key(combo), int(index) & 0xFFFFFFFF, 0xD0]))
        bg = _draw_distractors(bg, combo, domain, dom_rng, n)
    hue = domain.hue_shift + (class_hue_offset(combo, domain.class_hue) if domain.class_hue else 0.0)
    if hue or domain.saturation != 1.0:
        rgb = _shift_colour(rgb, hue, domain.saturation)
    m = _shape_mask(combo.shape, cx, cy, radius, angle, n)[..., None]
    img = bg * (1.0 - m) + rgb[None, None, :] * m
    img = Image.fromarray(np.round(img * 255).astype(np.uint8), "RGB")
    img = img.resize((size, size), Image.BOX)
    if domain.blur:
        from PIL import ImageFilter
        img = img.filter(ImageFilter.GaussianBlur(domain.blur * size))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(noise_seed).normal(0, noise_sigma * 255, size=arr.shape)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------
# image folder
# ----------------------------------------------------------------------------------------------
def _nuisance_combos():
    return [(s, b) for s in ATTRIBUTES["size"] for b in ATTRIBUTES["background"]]


def write_image_folder(root, classes, n_per_class, size=64, seed=0, ext="png", start_index=0, domain=None):
    """Write ``root/<class folder>/<i>.<ext>`` (e.g. ``root/red_circle/0.png``) for each class.

    ``classes``: (colour, shape) tuples, class names or folder names. Instance ``i`` of a class
    cycles through the 8 (size, background) nuisance combos in a per-class shuffled order, so
    every nuisance value is balanced, and is rendered with ``render(combo, start_index + i,
    size, seed, domain)``. Use seeds below 10_000 (pretraining uses 10_000 + S and 20_000 + S).
    Returns a list of (path, class_name) pairs in writing order. Existing files are overwritten.
    """
    ext = ext.lower().lstrip(".")
    if ext not in ("png", "jpg", "jpeg"):
        raise ValueError("ext must be png or jpg")
    nuis = _nuisance_combos()
    out = []
    for cls in classes:
        colour, shape = parse_class(cls)
        folder = os.path.join(root, class_folder((colour, shape)))
        os.makedirs(folder, exist_ok=True)
        order = np.random.default_rng(
            np.random.SeedSequence([int(seed), zlib.crc32(f"{colour}|{shape}".encode()), 0xF0])
        ).permutation(len(nuis))
        for i in range(int(n_per_class)):
            idx = start_index + i
            sz, bg = nuis[order[idx % len(nuis)]]
            img = render(Combo(colour, shape, sz, bg), idx, size, seed, domain)
            path = os.path.join(folder, f"{i}.{ext}")
            tmp = path + ".tmp"
            if ext == "png":
                img.save(tmp, format="PNG")
            else:
                img.save(tmp, format="JPEG", quality=95)
            os.replace(tmp, path)
            out.append((path, class_name((colour, shape))))
    return out
