"""Time ImageNet's indexing at full scale: a generated tree of empty files in CoOp's layout
(1000 classes x 1281 train files + 50 val files = 1,331,000 files by default). The index is
built twice: the first run lists every folder (progress bar) and writes
imagenet/images_index.json, the second reads that cache (one stat per class folder). Then the
dataset itself: all items, and a 16-shot draw (first, then from its cache).

    e2mim-bench-imagenet-index [--dir /tmp/imagenet_bench] [--classes 1000]
        [--train-per-class 1281] [--val-per-class 50] [--keep]

Empty files are enough: indexing never opens an image. The tree is deleted at the end unless
--keep (or --dir pointed to an existing tree, which is then reused).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import e2mim_datasets  # noqa: F401
from e2mim_engine.config import get_cfg_default
from e2mim_engine.data import build_dataset, index_class_folders
from e2mim_engine.utils import setup_logger


def generate(root, n_classes, n_train, n_val):
    d = os.path.join(root, "imagenet")
    wnids = [f"n{i:08d}" for i in range(n_classes)]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "classnames.txt"), "w") as f:
        f.write("".join(f"{w} class number {i}\n" for i, w in enumerate(wnids)))
    t = time.time()
    for i, w in enumerate(wnids):
        for split, n in (("train", n_train), ("val", n_val)):
            folder = os.path.join(d, "images", split, w)
            os.makedirs(folder, exist_ok=True)
            for k in range(n):
                name = f"{w}_{k}.JPEG" if split == "train" else f"ILSVRC2012_val_{i * n_val + k:08d}.JPEG"
                os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_WRONLY, 0o644))
        if (i + 1) % 100 == 0:
            print(f"  generated {i + 1}/{n_classes} classes ({time.time() - t:.0f} s)", flush=True)
    return n_classes * (n_train + n_val)


def build(root, shots=-1, seed=-1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = root, "ImageNet", shots, seed
    cfg.freeze()
    t = time.perf_counter()
    ds = build_dataset(cfg)
    return ds, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default="")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--train-per-class", type=int, default=1281)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    setup_logger()
    root = args.dir or tempfile.mkdtemp(prefix="imagenet_bench_")
    reuse = os.path.isdir(os.path.join(root, "imagenet", "images"))
    try:
        if reuse:
            print(f"Reusing the tree in {root}")
        else:
            print(f"Generating {args.classes} classes x ({args.train_per_class} + {args.val_per_class}) empty files "
                  f"in {root}")
            t = time.time()
            n = generate(root, args.classes, args.train_per_class, args.val_per_class)
            print(f"Generated {n:,} files in {time.time() - t:.1f} s")
        index = os.path.join(root, "imagenet", "images_index.json")
        if os.path.exists(index):
            os.remove(index)
        image_dir = os.path.join(root, "imagenet", "images")
        t = time.perf_counter()
        listing = index_class_folders(image_dir, ("train", "val"), index)
        t_index_first = time.perf_counter() - t
        t = time.perf_counter()
        index_class_folders(image_dir, ("train", "val"), index)
        t_index_cached = time.perf_counter() - t
        n_files = sum(len(names) for part in listing.values() for _, names in part)
        size = os.path.getsize(index)
        shutil.rmtree(os.path.join(root, "imagenet", "split_fewshot"), ignore_errors=True)
        ds, t_all = build(root)
        n_train, n_test, n_cls = len(ds.train_x), len(ds.test), ds.num_classes
        del ds
        _, t_fewshot = build(root, shots=16, seed=1)
        _, t_fewshot_cached = build(root, shots=16, seed=1)
        print(f"\nImageNet: {n_train:,} train, {n_test:,} val/test items, {n_cls} classes ({n_files:,} files)")
        print(f"index, first run  (list every class folder, write the {size / 2**20:.1f} MiB JSON): {t_index_first:6.2f} s")
        print(f"index, cached run (read the JSON, one stat per class folder):           {t_index_cached:6.2f} s")
        print(f"dataset, all {n_train:,} train items (cached index; builds every Datum): {t_all:6.2f} s")
        print(f"dataset, 16 shots seed 1 (cached index): draw + write {t_fewshot:.2f} s, cached draw {t_fewshot_cached:.2f} s")
    finally:
        if not args.keep and not reuse:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
