"""A small built-in dataset generated on first use (no download): 10 fruit classes drawn
as coloured shapes with noise, in the same folder-per-class layout and split-file format
as the benchmarks. It exists so the pipeline can be run and tested anywhere."""
import os
import random

from PIL import Image, ImageDraw, ImageFilter

from e2mim_engine.data import DATASET_REGISTRY, ZooDataset
from e2mim_engine.utils import atomic_folder

# class name -> (base colour, shape)
CLASSES = {
    "apple": ((200, 30, 30), "circle"),
    "banana": ((235, 210, 50), "crescent"),
    "blueberry": ((40, 50, 160), "dots"),
    "grape": ((110, 40, 120), "dots"),
    "kiwi": ((120, 140, 50), "ellipse"),
    "lemon": ((250, 240, 60), "ellipse"),
    "lime": ((90, 200, 60), "circle"),
    "orange": ((245, 140, 20), "circle"),
    "pear": ((180, 200, 70), "pear"),
    "watermelon": ((40, 150, 60), "stripes"),
}
IMAGES_PER_CLASS = 20
SIZE = 64


def _draw(colour, shape, rng):
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (SIZE, SIZE), bg)
    d = ImageDraw.Draw(img)
    c = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in colour)
    cx, cy, r = rng.randint(24, 40), rng.randint(24, 40), rng.randint(12, 20)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif shape == "ellipse":
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=c)
    elif shape == "crescent":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
        d.ellipse([cx - r + 6, cy - r - 4, cx + r + 6, cy + r - 4], fill=bg)
    elif shape == "dots":
        for _ in range(7):
            x, y = cx + rng.randint(-r, r), cy + rng.randint(-r, r)
            d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=c)
    elif shape == "pear":
        d.ellipse([cx - r, cy, cx + r, cy + 2 * r // 1], fill=c)
        d.ellipse([cx - r // 2, cy - r, cx + r // 2, cy + r // 2], fill=c)
    elif shape == "stripes":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
        for k in range(-r, r, 6):
            d.line([cx + k, cy - r, cx + k, cy + r], fill=(20, 80, 30), width=2)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))


def generate(dataset_dir, seed=0):
    """Write <dataset_dir>/images/<class>/<i>.jpg, atomically (a temp folder renamed at the end)."""
    with atomic_folder(dataset_dir) as tmp:
        rng = random.Random(seed)
        for name, (colour, shape) in CLASSES.items():
            folder = os.path.join(tmp, "images", name)
            os.makedirs(folder)
            for i in range(IMAGES_PER_CLASS):
                _draw(colour, shape, rng).save(os.path.join(folder, f"{name}_{i:03d}.jpg"), quality=90)


@DATASET_REGISTRY.register()
class Demo(ZooDataset):
    """The images are generated on first use; the split is made from them as for DTD."""

    generated = True
    generate = staticmethod(generate)
    dataset_dir = "demo"
    template = "a photo of a {}, a type of fruit."
    image_subdir = "images"
    split_file = "split_demo.json"
    layout = "demo/images/<class>/*.jpg and demo/split_demo.json (generated automatically)"
    source = "generated locally by datasets/demo.py on first use"
