"""Image files decoded to what they show, as 8-bit RGB.

Dassl's read_image is ``Image.open(path).convert("RGB")``, which is right for 8-bit RGB,
grayscale, palette and CMYK files but not for some others PIL reads:

* 16-bit grayscale (PNG, TIFF; PIL modes I;16* and I): convert("RGB") clips every value above
  255, so most images become blank white. Here values are scaled from 0..65535 to 0..255
  (v / 257, rounded). 16-bit RGB(A) PNGs PIL already reads as 8 bits per channel.
* 32-bit float (mode F): read as 0..1 when every value is within [0, 1], else as 0..255;
  clipped to that range.
* Transparency (RGBA, LA, La, RGBa, PA, palette or RGB/L with a transparent colour):
  convert("RGB") keeps the colour hidden under transparent pixels (often black or noise).
  Here the image is composited over white, which is what viewers show; fully opaque images
  are unchanged.
* 1-bit, grayscale (L), palette (P), CMYK, YCbCr: PIL's own conversion, as Dassl.
* EXIF orientation is NOT applied, as in Dassl's and the published methods' loaders (and
  torchvision's ImageFolder): the stored pixels are what the published numbers were computed
  on. A photo whose camera set the orientation tag is used as stored (possibly sideways).

Every failure is a DataError naming the file.
"""
import numpy as np
from PIL import Image

from ..errors import DataError

# (this module's source is part of the feature caches' key: e2mim_clip.prompt_trainer.frozen_code_digest)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "La", "RGBa", "PA")


def to_rgb(img):
    """The 8-bit RGB image of what ``img`` shows (rules in the module docstring)."""
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 255.0 if arr.size and arr.min() >= 0 and arr.max() <= 1 else 1.0
        img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    if img.mode in _ALPHA or "transparency" in img.info:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def read_image(path):
    """The image at ``path`` as 8-bit RGB (to_rgb); a DataError naming the file otherwise."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"Image file {path} does not exist (listed by the dataset split).") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"Cannot read image {path}: {e}. The file is corrupt or not an image; "
                        f"replace it or remove it from the split.") from None
