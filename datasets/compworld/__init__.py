"""CompWorld: a procedurally generated world where base-to-new generalization is real.

Classes are colour x shape pairs ("red circle"); size and background vary within a class.
A tiny CLIP (backbone name ``compworld-tiny``) is pretrained on CPU on image/caption pairs
of 40 of the 64 pairs (``e2mim_datasets.compworld.pretrain``; built once, cached in ~/.cache/e2mim).
The dataset has 48 classes in label order [24 base | 24 new], so DATASET.SUBSAMPLE_CLASSES
base/new picks exactly these halves:
- base: 24 pairs seen in pretraining, each colour and each shape 3 times;
- new:  the 24 pairs never seen together in pretraining, each made of a colour and a shape
        that both were seen: zero-shot transfer to new compositions.
Images are rendered with dataset seed 0 (pretraining renders its own with seeds >= 10000),
40 per class, split 50/20/30 per class as CoOp does; everything is written on first use.
"""
import json
import os
import random

from e2mim_engine.data import DATASET_REGISTRY, BenchmarkDataset, read_split, save_split, split_per_class
from e2mim_engine.errors import DataError
from e2mim_engine.utils import atomic_folder

from . import render as cw

IMAGES_PER_CLASS = 40
IMAGE_SIZE = 64
RENDER_SEED = 0
WORLD_STAMP = "world.json"   # what a generated world was rendered with (the bench checks it)
WORLD_SEED = 0   # the seed of the base/new split of pretraining (and of the tiny CLIP)


def world_classes(seed=WORLD_SEED):
    """([24 base (colour, shape)], [24 new]) in label order."""
    seen, unseen = cw.base_new_split(seed)
    # Of the 40 pretraining pairs keep the 24 on the next three Latin-square levels after the
    # held-out ones: every colour and every shape appears exactly 3 times in base and in new.
    levels = cw.latin_levels(seed)
    n_new = len(unseen) // 8
    base = [c for c in seen if levels[c] < 2 * n_new]
    return base, unseen


# The calibrated world's camera: every class rendered with its own hue offset of +-18 degrees
# (render.class_hue_offset). Zero-shot prompts then miss each class a little in its own way; a
# prompt fitted to the base classes learns their corrections, which are wrong for the new
# ones -- the pattern prompt tuning shows on the real benchmarks (see DATASETS.md).
SHIFT_DOMAIN = cw.Domain(class_hue=18.0)


def bench_classes(seed=WORLD_SEED):
    """([24 base (colour, shape)], [24 new]) of the bench world, in label order. Base: CompWorld's
    24 base pairs. New: the other 16 pairs seen in pretraining (the two Latin-square levels the
    base leaves) and 8 never seen together (the first held-out level). On the real benchmarks a
    new class is one CLIP knows about as well as a base class (zero-shot is as good on new as on
    base); all-unseen new classes made zero-shot's new accuracy 20 points below its base."""
    seen, unseen = cw.base_new_split(seed)
    levels = cw.latin_levels(seed)
    base, _ = world_classes(seed)
    first_unseen = min(levels[c] for c in unseen)
    new = [c for c in cw.all_classes() if (c in seen and c not in base) or (c in unseen and levels[c] == first_unseen)]
    return base, new


def generate(dataset_dir, domain=None, split_name="split_compworld.json", images_per_class=IMAGES_PER_CLASS,
             stamp=None, classes=None):
    """Render the images and write the split file (and ``stamp``, a dict, as world.json),
    atomically (temp folder renamed at the end). ``classes``: (base, new), default
    ``world_classes()``; base comes first, so the base classes' split does not depend on the new."""
    with atomic_folder(dataset_dir) as tmp:
        if stamp is not None:
            with open(os.path.join(tmp, WORLD_STAMP), "w") as f:
                json.dump(stamp, f, indent=1, sort_keys=True)
        base, new = classes or world_classes()
        classes = base + new
        image_dir = os.path.join(tmp, "images")
        written = cw.write_image_folder(image_dir, classes, images_per_class, size=IMAGE_SIZE, seed=RENDER_SEED,
                                        domain=domain)
        by_class = {}
        for path, name in written:
            by_class.setdefault(name, []).append(path)
        groups = [(label, cw.class_name(c), sorted(by_class[cw.class_name(c)])) for label, c in enumerate(classes)]
        train, val, test = split_per_class(groups, 0.5, 0.2, rng=random.Random(1))
        save_split(train, val, test, os.path.join(tmp, split_name), image_dir)


@DATASET_REGISTRY.register()
class CompWorld(BenchmarkDataset):
    dataset_dir = "compworld"
    template = "a photo of a {}."
    generated = True
    generate = staticmethod(generate)   # images and split file together
    layout = "compworld/images/<colour>_<shape>/<i>.png and compworld/split_compworld.json (generated)"
    source = "generated locally by datasets/compworld/ on first use"
    split_file = "split_compworld.json"

    def load_splits(self, cfg):
        self.image_dir = os.path.join(self.dataset_dir, "images")
        return read_split(os.path.join(self.dataset_dir, self.split_file), self.image_dir)


SHIFT_IMAGES_PER_CLASS = 60  # 30/12/18 per class: validation holds 12 images of each base class


def generate_shift(dataset_dir):
    generate(dataset_dir, SHIFT_DOMAIN, CompWorldShift.split_file, SHIFT_IMAGES_PER_CLASS)


@DATASET_REGISTRY.register()
class CompWorldShift(CompWorld):
    """CompWorld seen through a shifted camera (SHIFT_DOMAIN): same classes, split and tiny
    CLIP, images rendered with a per-class hue offset. The calibrated world of the E2MIM study."""
    dataset_dir = "compworld_shift"
    generate = staticmethod(generate_shift)
    split_file = "split_compworld_shift.json"
    layout = ("compworld_shift/images/<colour>_<shape>/<i>.png and compworld_shift/split_compworld_shift.json "
              "(generated)")


# The bench world (docs/BENCH.md): calibrated with the eight published baselines only, so that
# they rank as on the 11 real benchmarks. Its camera adds what the real benchmarks have and the
# pretraining images lack, at two levels:
# - shared by every class (a dataset-level domain, as a benchmark's photos share a style): every
#   object colour's hue turned by 15 degrees, and two grey clutter shapes behind each object (the
#   image side of the shift, which only prompts inside the image encoder can adapt to);
# - of each class's own, tied to the pair (`class_hue`): a further +-12 degrees, so a correction
#   fitted on base classes does not carry over to new ones.
BENCH_DOMAIN = cw.Domain(hue_shift=15.0, class_hue=12.0, distractors=2)
# 150/60/90 per class: 90 test images of each class, so that which images a seed's model happens
# to get right moves a seed's accuracy less (at 30 per class it dominated the seed spread).
BENCH_IMAGES_PER_CLASS = 300
# 1: 100 images per class, no clutter, all-unseen new classes; 2: 300 images, clutter;
# 3: new classes mostly seen in pretraining (bench_classes). Base classes and their images and
# split are the same in 2 and 3.
BENCH_WORLD_VERSION = 3


def bench_stamp():
    return {"world": "compworld_bench", "version": BENCH_WORLD_VERSION, "domain": dict(BENCH_DOMAIN._asdict()),
            "images_per_class": BENCH_IMAGES_PER_CLASS,
            "new_classes": [cw.class_name(c) for c in bench_classes()[1]]}


def generate_bench(dataset_dir):
    generate(dataset_dir, BENCH_DOMAIN, CompWorldBench.split_file, BENCH_IMAGES_PER_CLASS, stamp=bench_stamp(),
             classes=bench_classes())


@DATASET_REGISTRY.register()
class CompWorldBench(CompWorld):
    """The bench world: CompWorld's base classes and tiny CLIP, new classes from bench_classes,
    seen through BENCH_DOMAIN's camera, with more images per class (docs/BENCH.md)."""
    dataset_dir = "compworld_bench"
    generate = staticmethod(generate_bench)
    split_file = "split_compworld_bench.json"
    layout = ("compworld_bench/images/<colour>_<shape>/<i>.png and compworld_bench/split_compworld_bench.json "
              "(generated)")

    def load_splits(self, cfg):
        # A folder rendered by an older version of the bench holds another world: refuse it rather
        # than mix its numbers with the documented ones.
        want, path = bench_stamp(), os.path.join(self.dataset_dir, WORLD_STAMP)
        try:
            with open(path) as f:
                have = json.load(f)
        except (OSError, ValueError):
            have = None
        if have != want:
            raise DataError(
                f"{self.dataset_dir} holds another version of the bench world than this code renders "
                f"({'no ' + WORLD_STAMP if have is None else 'its ' + WORLD_STAMP + ' says ' + json.dumps(have)}; "
                f"this code renders {json.dumps(want)}). Its numbers would not be comparable with the documented "
                f"tables. Delete the folder (it is generated) and run again: it is rendered anew on first use.")
        return super().load_splits(cfg)
