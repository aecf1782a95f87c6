"""Bad or unusual input, as a user meets it: image files of every mode PIL reads (decoded to
what they show), class names, class counts, seeds, shots, symlink loops, missing roots,
argument errors before anything is written, and advice to delete something that works when
followed. Each case asserts what the user sees."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from e2mim_engine.data.images import read_image
from e2mim_engine.errors import DataError

W, H = 8, 6


def ramp(dtype=np.uint8, top=255):
    return (np.arange(W * H).reshape(H, W) * top // (W * H - 1)).astype(dtype)


def png16_rgb(path, rgb16):
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), written chunk by chunk."""
    h, w, _ = rgb16.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def rgb(path):
    out = read_image(str(path))
    assert out.mode == "RGB" and out.size == (W, H)
    return np.asarray(out).astype(int)


# ---- (4) images of every mode --------------------------------------------------------------------
def test_16bit_grayscale_png_is_scaled_not_blank(tmp_path):
    """The probe's case: a 16-bit PNG was read as a blank white image."""
    a = ramp(np.uint16, 65535)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    got = rgb(tmp_path / "g16.png")
    assert (got == np.rint(a / 257)[..., None]).all() and got.min() == 0 and got.max() == 255


def test_32bit_integer_and_float_images(tmp_path):
    a = ramp(np.int32, 65535)
    Image.fromarray(a, "I").save(tmp_path / "i32.tif")
    assert (rgb(tmp_path / "i32.tif") == np.rint(a / 257)[..., None]).all()
    f = (np.arange(W * H).reshape(H, W) / (W * H - 1)).astype(np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f01.tif")
    assert (rgb(tmp_path / "f01.tif") == np.rint(f * 255)[..., None]).all()
    Image.fromarray(f * 200, "F").save(tmp_path / "f255.tif")
    assert (rgb(tmp_path / "f255.tif") == np.rint(f * 200)[..., None]).all()


def test_16bit_rgb_png_keeps_its_colours(tmp_path):
    c = np.stack([ramp(np.uint16, 65535), 65535 - ramp(np.uint16, 65535), np.full((H, W), 32896, np.uint16)], -1)
    png16_rgb(tmp_path / "rgb16.png", c)
    got = rgb(tmp_path / "rgb16.png")
    assert np.abs(got - c / 257).max() <= 1     # PIL keeps the high byte: within one step of 8 bits


def test_1bit_grayscale_palette_and_cmyk(tmp_path):
    bits = (ramp() > 127)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert (rgb(tmp_path / "b.png") == np.where(bits, 255, 0)[..., None]).all()
    Image.fromarray(ramp(), "L").save(tmp_path / "l.png")
    assert (rgb(tmp_path / "l.png") == ramp()[..., None]).all()
    colours = np.array([[200, 10, 30], [5, 150, 250], [90, 90, 0]], np.uint8)
    idx = (np.arange(W * H).reshape(H, W) % 3).astype(np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(colours.flatten().tolist() + [0] * (768 - 9))
    p.save(tmp_path / "p.png")
    assert (rgb(tmp_path / "p.png") == colours[idx]).all()
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    r, g, b = rgb(tmp_path / "c.jpg").mean(axis=(0, 1))
    assert r > 240 and g < 15 and b < 15                   # pure red stays red


def test_transparency_is_composited_over_white(tmp_path):
    colour = np.zeros((H, W, 4), np.uint8)
    colour[..., 0] = 255                                   # red, hidden under alpha 0 on the left half
    colour[..., 3] = 255
    colour[:, : W // 2, 3] = 0
    colour[:, W // 2:W // 2 + 1, 3] = 128
    Image.fromarray(colour, "RGBA").save(tmp_path / "rgba.png")
    got = rgb(tmp_path / "rgba.png")
    assert (got[:, : W // 2] == 255).all()                 # what a viewer shows: the white page
    assert (got[:, -1] == [255, 0, 0]).all()               # opaque pixels unchanged
    assert (got[:, W // 2] == [255, 127, 127]).all()       # half transparent: half way to white
    la = np.stack([ramp(), np.where(np.arange(W) < 2, 0, 255)[None].repeat(H, 0).astype(np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    g = rgb(tmp_path / "la.png")
    assert (g[:, :2] == 255).all() and (g[:, 2:] == ramp()[:, 2:, None]).all()
    idx = np.zeros((H, W), np.uint8)
    idx[:, W // 2:] = 1
    p = Image.fromarray(idx, "P")
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.save(tmp_path / "pt.png", transparency=0)            # palette entry 0 transparent
    g = rgb(tmp_path / "pt.png")
    assert (g[:, : W // 2] == 255).all() and (g[:, W // 2:] == [0, 0, 255]).all()


def test_exif_orientation_is_not_applied_as_in_the_published_loaders(tmp_path):
    a = np.zeros((H, W, 3), np.uint8)
    a[:, : W // 2] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    im.save(tmp_path / "o.png", exif=exif)
    assert Image.open(tmp_path / "o.png").getexif().get(0x0112) == 6
    assert (rgb(tmp_path / "o.png") == a).all()           # stored pixels, stored orientation


def test_undecodable_image_names_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError) as e:
        read_image(str(tmp_path / "x.png"))
    assert str(e.value).startswith(f"Cannot read image {tmp_path / 'x.png'}: ") and "corrupt or not an image" in \
        str(e.value)
