"""Image transforms by their Dassl names (INPUT.TRANSFORMS)."""
import random

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageEnhance
import PIL.ImageOps
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

from ..errors import ConfigError

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}
SUPPORTED = ("random_resized_crop", "random_crop", "random_flip", "center_crop", "randaugment", "colorjitter",
             "randomgrayscale", "gaussian_blur", "normalize")


# ---- RandAugment as Dassl's "randaugment" runs it (CoPrompt's published recipe) ----------------
# Each operation takes a PIL image and its magnitude v (already scaled into its range). The ones
# with a direction flip it with probability 1/2 (one random.random() each); the draws use Python's
# and numpy's global generators, in Dassl's order, so a seeded run draws what Dassl draws.
def _flip(v):
    return -v if random.random() > 0.5 else v


def _affine(img, coeffs):
    return img.transform(img.size, PIL.Image.AFFINE, coeffs)


def _solarize_add(img, v):
    """Add v to every channel (clipped to 255), then solarize above 128."""
    added = np.clip(np.asarray(img).astype(np.float64) + v, 0, 255).astype(np.uint8)
    return PIL.ImageOps.solarize(PIL.Image.fromarray(added), 128)


def _cutout(img, v):
    """A v x v box of grey (125, 123, 114). Its corner is drawn as Dassl draws it: numpy's
    uniform(w) (low w, high 1: a value between 1 and w), minus v / 2, floored at 0."""
    if v < 0:
        return img
    w, h = img.size
    x0, y0 = int(max(0, np.random.uniform(w) - v / 2.0)), int(max(0, np.random.uniform(h) - v / 2.0))
    img = img.copy()
    PIL.ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), (125, 123, 114))
    return img


# (operation, magnitude at m = 0, magnitude at m = 30): the 16 operations of Dassl's RandAugment
# (the list of the EfficientNet AutoAugment code), in its order: the op drawn depends on the index.
RANDAUGMENT_OPS = (
    (lambda img, v: PIL.ImageOps.autocontrast(img), 0, 1),
    (lambda img, v: PIL.ImageOps.equalize(img), 0, 1),
    (lambda img, v: PIL.ImageOps.invert(img), 0, 1),
    (lambda img, v: img.rotate(_flip(v)), 0, 30),
    (lambda img, v: PIL.ImageOps.posterize(img, int(v)), 4, 8),
    (lambda img, v: PIL.ImageOps.solarize(img, v), 0, 256),
    (_solarize_add, 0, 110),
    (lambda img, v: PIL.ImageEnhance.Color(img).enhance(v), 0.1, 1.9),
    (lambda img, v: PIL.ImageEnhance.Contrast(img).enhance(v), 0.1, 1.9),
    (lambda img, v: PIL.ImageEnhance.Brightness(img).enhance(v), 0.1, 1.9),
    (lambda img, v: PIL.ImageEnhance.Sharpness(img).enhance(v), 0.1, 1.9),
    (lambda img, v: _affine(img, (1, _flip(v), 0, 0, 1, 0)), 0.0, 0.3),   # shear x
    (lambda img, v: _affine(img, (1, 0, 0, _flip(v), 1, 0)), 0.0, 0.3),   # shear y
    (_cutout, 0, 40),
    (lambda img, v: _affine(img, (1, 0, _flip(v), 0, 1, 0)), 0.0, 100),   # translate x (pixels)
    (lambda img, v: _affine(img, (1, 0, 0, 0, 1, _flip(v))), 0.0, 100),   # translate y (pixels)
)


class RandAugment:
    """n operations drawn with replacement (random.choices), each at magnitude m of 30:
    v = m / 30 * (high - low) + low (INPUT.RANDAUGMENT_N, INPUT.RANDAUGMENT_M)."""

    def __init__(self, n=2, m=10):
        if not isinstance(n, int) or n < 0 or not 0 <= m <= 30:
            raise ConfigError(f"INPUT.RANDAUGMENT_N must be an integer >= 0 and INPUT.RANDAUGMENT_M a number in "
                              f"[0, 30]; got {n!r} and {m!r}.")
        self.n, self.m = n, m

    def __call__(self, img):
        for op, low, high in random.choices(RANDAUGMENT_OPS, k=self.n):
            img = op(img, self.m / 30 * (high - low) + low)
        return img

    def __repr__(self):
        return f"RandAugment(n={self.n}, m={self.m})"


def build_transform(cfg, is_train=True, choices=None):
    """Train: the listed augmentations, then to-tensor and normalize. Test: resize the shorter
    side to max(INPUT.SIZE), center crop INPUT.SIZE, to-tensor, normalize (Dassl's rule)."""
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in SUPPORTED]
    if unknown:
        raise ConfigError(f"INPUT.TRANSFORMS has unsupported name(s) {', '.join(unknown)}; "
                          f"supported: {', '.join(SUPPORTED)}.")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATIONS:
        raise ConfigError(f"INPUT.INTERPOLATION='{cfg.INPUT.INTERPOLATION}' is not one of "
                          f"{', '.join(INTERPOLATIONS)}.")
    interp = INTERPOLATIONS[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    tail = [T.ToTensor()] + ([normalize] if "normalize" in choices else [])
    if cfg.INPUT.NO_TRANSFORM:
        return T.Compose(tail)
    if not is_train:
        return T.Compose([T.Resize(max(size), interpolation=interp), T.CenterCrop(size)] + tail)
    tfm = []
    if "random_resized_crop" in choices:
        tfm.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    elif "random_crop" in choices:
        tfm += [T.Resize(size, interpolation=interp), T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING)]
    elif "center_crop" in choices:
        tfm += [T.Resize(max(size), interpolation=interp), T.CenterCrop(size)]
    else:
        tfm.append(T.Resize(size, interpolation=interp))
    if "random_flip" in choices:
        tfm.append(T.RandomHorizontalFlip())
    if "randaugment" in choices:  # Dassl's place for it: after the crop and flip, before colour jitter
        tfm.append(RandAugment(cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M))
    if "colorjitter" in choices:
        i = cfg.INPUT
        tfm.append(T.ColorJitter(i.COLORJITTER_B, i.COLORJITTER_C, i.COLORJITTER_S, i.COLORJITTER_H))
    if "randomgrayscale" in choices:
        tfm.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfm.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    return T.Compose(tfm + tail)
