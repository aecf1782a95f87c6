"""Image transforms by their Dassl names (INPUT.TRANSFORMS)."""
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

from ..errors import ConfigError

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}
SUPPORTED = ("random_resized_crop", "random_crop", "random_flip", "center_crop", "colorjitter",
             "randomgrayscale", "gaussian_blur", "normalize")


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
    if "colorjitter" in choices:
        i = cfg.INPUT
        tfm.append(T.ColorJitter(i.COLORJITTER_B, i.COLORJITTER_C, i.COLORJITTER_S, i.COLORJITTER_H))
    if "randomgrayscale" in choices:
        tfm.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfm.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    return T.Compose(tfm + tail)
