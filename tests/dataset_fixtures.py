"""Miniature copies of the 15 benchmark layouts (as CoOp's DATASETS.md describes them), for tests.

Every writer builds one dataset under ``root`` in the exact folder layout CoOp reads, with
tiny JPEGs (all the same 8x8 bytes), the official annotation files (.txt, .mat, .json) a
dataset needs to make its split, and, where CoOp ships one, a small split_zhou_*.json.
Each returns a ``Spec`` with what loading it must give: class names in label order,
split sizes, and, for datasets whose split can be regenerated, what the regenerated
split must give (CoOp's per-class 50/20/30, or its 80/20 cut of the official trainval).
"""
import io
import json
import os
import random
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

N_TRAIN, N_VAL, N_TEST = 6, 3, 3   # per class in the fixture split files
PER_CLASS = N_TRAIN + N_VAL + N_TEST


# DATASET.NAME -> its config file in configs/datasets/
YAML = {"ImageNet": "imagenet.yaml", "Caltech101": "caltech101.yaml", "OxfordPets": "oxford_pets.yaml",
        "StanfordCars": "stanford_cars.yaml", "OxfordFlowers": "oxford_flowers.yaml", "Food101": "food101.yaml",
        "FGVCAircraft": "fgvc_aircraft.yaml", "SUN397": "sun397.yaml", "DescribableTextures": "dtd.yaml",
        "EuroSAT": "eurosat.yaml", "UCF101": "ucf101.yaml", "ImageNetV2": "imagenetv2.yaml",
        "ImageNetSketch": "imagenet_sketch.yaml", "ImageNetA": "imagenet_a.yaml", "ImageNetR": "imagenet_r.yaml"}


@dataclass
class Spec:
    name: str                      # DATASET.NAME
    folder: str                    # folder under the root
    classnames: list               # in label order
    sizes: tuple                   # (train, val, test) of the full dataset (val None: test only)
    train_per_class: int = N_TRAIN
    val_per_class: int = N_VAL
    split_file: str = ""           # split_zhou_*.json written by the fixture ("" if none)
    gen_sizes: tuple = None        # sizes once the split file is deleted and regenerated
    gen_classnames: list = None
    test_only: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def yaml(self):
        return YAML[self.name]


def coop_spec(name, folder, names, gen_sizes):
    """The Spec of a fixture with 5 classes of N_TRAIN/N_VAL/N_TEST items in CoOp's
    split_zhou_<name>.json, whose split can be regenerated to ``gen_sizes``."""
    return Spec(name, folder, names, (30, 15, 15), split_file=f"split_zhou_{name}.json", gen_sizes=gen_sizes,
                gen_classnames=names)


_JPEG = None


def jpeg_bytes():
    global _JPEG
    if _JPEG is None:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (120, 60, 200)).save(buf, format="JPEG", quality=80)
        _JPEG = buf.getvalue()
    return _JPEG


def write_image(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(jpeg_bytes())


def write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def write_split(path, groups, n_train=N_TRAIN, n_val=N_VAL):
    """groups: [(label, classname, [relative paths])]: the first n_train of each class go to
    train, the next n_val to val, the rest to test (CoOp's format)."""
    split = {"train": [], "val": [], "test": []}
    for label, cname, rels in groups:
        split["train"] += [[r, label, cname] for r in rels[:n_train]]
        split["val"] += [[r, label, cname] for r in rels[n_train:n_train + n_val]]
        split["test"] += [[r, label, cname] for r in rels[n_train + n_val:]]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(split, f, indent=4)


def dassl_fewshot(source, k):
    """Dassl's generate_fewshot_dataset on the global random module (what CoOp runs): per label
    in order of first appearance, random.sample(items, k), or all items if fewer."""
    groups = OrderedDict()
    for d in source:
        groups.setdefault(d.label, []).append(d)
    out = []
    for items in groups.values():
        out += random.sample(items, k) if len(items) >= k else items
    return out


def _folder_split_sizes(n_classes, n=PER_CLASS):
    """read_and_split_data on n images per class: round(n/2), round(n/5), rest."""
    tr, va = round(n * 0.5), round(n * 0.2)
    return (tr * n_classes, va * n_classes, (n - tr - va) * n_classes)


def _trainval_sizes(n_classes, n_trainval=N_TRAIN + N_VAL, n_test=N_TEST):
    """split_trainval (p_val 0.2) on n_trainval items per class plus the official test."""
    va = round(n_trainval * 0.2)
    return ((n_trainval - va) * n_classes, va * n_classes, n_test * n_classes)


# ---- the 11 few-shot benchmarks ------------------------------------------------------------
def make_caltech101(root, split=True):
    d = os.path.join(root, "caltech-101")
    img = os.path.join(d, "101_ObjectCategories")
    folders = ["Faces", "Leopards", "Motorbikes", "accordion", "airplanes"]   # sorted, case-sensitive
    names = ["face", "leopard", "motorbike", "accordion", "airplane"]
    groups = []
    for label, (folder, name) in enumerate(zip(folders, names)):
        rels = [f"{folder}/image_{k:04d}.jpg" for k in range(1, PER_CLASS + 1)]
        for r in rels:
            write_image(os.path.join(img, r))
        groups.append((label, name, rels))
    for ignored in ("BACKGROUND_Google", "Faces_easy"):
        for k in range(1, PER_CLASS + 1):
            write_image(os.path.join(img, ignored, f"image_{k:04d}.jpg"))
    if split:
        write_split(os.path.join(d, "split_zhou_Caltech101.json"), groups)
    return coop_spec("Caltech101", "caltech-101", names, _folder_split_sizes(5))


PET_BREEDS = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "Bengal"]


def make_oxford_pets(root, split=True):
    d = os.path.join(root, "oxford_pets")
    names = [b.lower() for b in PET_BREEDS]
    trainval, test, groups = [], [], []
    for label, breed in enumerate(PET_BREEDS):
        species = 1 if breed[0].isupper() else 2   # cats are capitalised in the real data
        rels = [f"{breed}_{k}.jpg" for k in range(1, PER_CLASS + 1)]
        for r in rels:
            write_image(os.path.join(d, "images", r))
        lines = [f"{r[:-4]} {label + 1} {species} {label + 1}" for r in rels]
        trainval += lines[:N_TRAIN + N_VAL]
        test += lines[N_TRAIN + N_VAL:]
        groups.append((label, names[label], rels))
    write_text(os.path.join(d, "annotations", "trainval.txt"), trainval)
    write_text(os.path.join(d, "annotations", "test.txt"), test)
    if split:
        write_split(os.path.join(d, "split_zhou_OxfordPets.json"), groups)
    return coop_spec("OxfordPets", "oxford_pets", names, _trainval_sizes(5))


CAR_NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012", "BMW M3 Coupe 2012",
             "Chevrolet Express Van 2007"]


def _cars_annos(path, labels):
    ann = np.zeros((1, len(labels)), dtype=[("bbox_x1", "O"), ("bbox_y1", "O"), ("class", "O"), ("fname", "O")])
    for i, y in enumerate(labels):
        ann[0, i]["bbox_x1"] = np.array([[1]], dtype=np.uint8)
        ann[0, i]["bbox_y1"] = np.array([[1]], dtype=np.uint8)
        ann[0, i]["class"] = np.array([[y + 1]], dtype=np.uint8)
        ann[0, i]["fname"] = f"{i + 1:05d}.jpg"
    from scipy.io import savemat
    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {"annotations": ann})


def make_stanford_cars(root, split=True):
    from scipy.io import savemat
    d = os.path.join(root, "stanford_cars")
    n = len(CAR_NAMES)
    names = [" ".join([c.split(" ")[-1]] + c.split(" ")[:-1]) for c in CAR_NAMES]
    # Labels interleaved as in the real annotation files (not grouped by class).
    train_labels = [i % n for i in range(n * (N_TRAIN + N_VAL))]
    test_labels = [i % n for i in range(n * N_TEST)]
    for i in range(len(train_labels)):
        write_image(os.path.join(d, "cars_train", f"{i + 1:05d}.jpg"))
    for i in range(len(test_labels)):
        write_image(os.path.join(d, "cars_test", f"{i + 1:05d}.jpg"))
    meta = np.empty((1, n), dtype=object)
    for i, c in enumerate(CAR_NAMES):
        meta[0, i] = c
    os.makedirs(os.path.join(d, "devkit"), exist_ok=True)
    savemat(os.path.join(d, "devkit", "cars_meta.mat"), {"class_names": meta})
    _cars_annos(os.path.join(d, "devkit", "cars_train_annos.mat"), train_labels)
    _cars_annos(os.path.join(d, "cars_test_annos_withlabels.mat"), test_labels)
    if split:
        groups = []
        for y in range(n):
            tr = [f"cars_train/{i + 1:05d}.jpg" for i, lab in enumerate(train_labels) if lab == y]
            te = [f"cars_test/{i + 1:05d}.jpg" for i, lab in enumerate(test_labels) if lab == y]
            groups.append((y, names[y], tr + te))
        write_split(os.path.join(d, "split_zhou_StanfordCars.json"), groups)
    return coop_spec("StanfordCars", "stanford_cars", names, _trainval_sizes(5))


FLOWER_NAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold"]


def make_oxford_flowers(root, split=True):
    from scipy.io import savemat
    d = os.path.join(root, "oxford_flowers")
    n = len(FLOWER_NAMES)
    labels = [(i % n) + 1 for i in range(n * PER_CLASS)]   # 1-based, interleaved
    for i in range(len(labels)):
        write_image(os.path.join(d, "jpg", f"image_{i + 1:05d}.jpg"))
    savemat(os.path.join(d, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    with open(os.path.join(d, "cat_to_name.json"), "w") as f:
        json.dump({str(i + 1): c for i, c in enumerate(FLOWER_NAMES)}, f)
    if split:
        groups = [(y - 1, FLOWER_NAMES[y - 1], [f"image_{i + 1:05d}.jpg" for i, lab in enumerate(labels) if lab == y])
                  for y in range(1, n + 1)]
        write_split(os.path.join(d, "split_zhou_OxfordFlowers.json"), groups)
    return coop_spec("OxfordFlowers", "oxford_flowers", FLOWER_NAMES, _folder_split_sizes(5))


def _class_folders(root, folder, image_sub, split_name, classes, renames=None, split=True, pattern="{c}_{k:04d}.jpg"):
    d = os.path.join(root, folder)
    img = os.path.join(d, image_sub)
    renames = renames or {}
    groups = []
    for label, c in enumerate(classes):
        rels = [f"{c}/" + pattern.format(c=c, k=k) for k in range(1, PER_CLASS + 1)]
        for r in rels:
            write_image(os.path.join(img, r))
        groups.append((label, renames.get(c, c), rels))
    if split:
        write_split(os.path.join(d, split_name), groups)
    return [renames.get(c, c) for c in classes]


def make_food101(root, split=True):
    classes = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare"]
    names = _class_folders(root, "food-101", "images", "split_zhou_Food101.json", classes, split=split,
                           pattern="{k}.jpg")
    os.makedirs(os.path.join(root, "food-101", "meta"), exist_ok=True)
    return coop_spec("Food101", "food-101", names, _folder_split_sizes(5))


def make_dtd(root, split=True):
    classes = ["banded", "blotchy", "braided", "bubbly", "bumpy"]
    names = _class_folders(root, "dtd", "images", "split_zhou_DescribableTextures.json", classes, split=split)
    for sub in ("imdb", "labels"):
        os.makedirs(os.path.join(root, "dtd", sub), exist_ok=True)
    return coop_spec("DescribableTextures", "dtd", names, _folder_split_sizes(5))


EUROSAT_RENAMES = {"AnnualCrop": "Annual Crop Land", "Forest": "Forest",
                   "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
                   "SeaLake": "Sea or Lake"}


def make_eurosat(root, split=True):
    classes = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "SeaLake"]
    names = _class_folders(root, "eurosat", "2750", "split_zhou_EuroSAT.json", classes, EUROSAT_RENAMES,
                           split=split, pattern="{c}_{k}.jpg")
    return coop_spec("EuroSAT", "eurosat", names, _folder_split_sizes(5))


AIRCRAFT = ["707-320", "727-200", "A300B4", "Cessna 172", "F-16A/B"]


def make_fgvc_aircraft(root, split=True):
    d = os.path.join(root, "fgvc_aircraft")
    write_text(os.path.join(d, "variants.txt"), AIRCRAFT)
    lines = {"train": [], "val": [], "test": []}
    k = 1000000
    for c in AIRCRAFT:
        for part, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for _ in range(n):
                k += 1
                write_image(os.path.join(d, "images", f"{k:07d}.jpg"))
                lines[part].append(f"{k:07d} {c}")
    for part, ls in lines.items():
        write_text(os.path.join(d, f"images_variant_{part}.txt"), ls)
    return Spec("FGVCAircraft", "fgvc_aircraft", AIRCRAFT, (30, 15, 15))


SUN_CLASSES = ["/a/abbey", "/a/airplane_cabin", "/a/apartment_building/outdoor", "/b/bakery/shop", "/b/bus_interior"]
SUN_NAMES = ["abbey", "airplane_cabin", "outdoor apartment_building", "shop bakery", "bus_interior"]


def make_sun397(root, split=True):
    d = os.path.join(root, "sun397")
    write_text(os.path.join(d, "ClassName.txt"), SUN_CLASSES)
    train, test, groups = [], [], []
    for label, c in enumerate(SUN_CLASSES):
        rels = [f"{c[1:]}/sun_{label}{k:03d}.jpg" for k in range(1, PER_CLASS + 1)]
        for r in rels:
            write_image(os.path.join(d, "SUN397", r))
        train += ["/" + r for r in rels[:N_TRAIN + N_VAL]]
        test += ["/" + r for r in rels[N_TRAIN + N_VAL:]]
        groups.append((label, SUN_NAMES[label], rels))
    write_text(os.path.join(d, "Training_01.txt"), train)
    write_text(os.path.join(d, "Testing_01.txt"), test)
    if split:
        write_split(os.path.join(d, "split_zhou_SUN397.json"), groups)
    return coop_spec("SUN397", "sun397", SUN_NAMES, _trainval_sizes(5))


UCF_ACTIONS = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "YoYo"]
UCF_NAMES = ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling", "Yo_Yo"]


def make_ucf101(root, split=True):
    d = os.path.join(root, "ucf101")
    write_text(os.path.join(d, "ucfTrainTestlist", "classInd.txt"),
               [f"{i + 1} {a}" for i, a in enumerate(UCF_ACTIONS)])
    train, test, groups = [], [], []
    for label, (a, folder) in enumerate(zip(UCF_ACTIONS, UCF_NAMES)):
        vids = [f"v_{a}_g{k:02d}_c01" for k in range(1, PER_CLASS + 1)]
        rels = [f"{folder}/{v}.jpg" for v in vids]
        for r in rels:
            write_image(os.path.join(d, "UCF-101-midframes", r))
        train += [f"{a}/{v}.avi {label + 1}" for v in vids[:N_TRAIN + N_VAL]]
        test += [f"{a}/{v}.avi" for v in vids[N_TRAIN + N_VAL:]]
        groups.append((label, folder, rels))
    write_text(os.path.join(d, "ucfTrainTestlist", "trainlist01.txt"), train)
    write_text(os.path.join(d, "ucfTrainTestlist", "testlist01.txt"), test)
    if split:
        write_split(os.path.join(d, "split_zhou_UCF101.json"), groups)
    return coop_spec("UCF101", "ucf101", UCF_NAMES, _trainval_sizes(5))


# ---- ImageNet and its variants --------------------------------------------------------------
IMAGENET = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
            ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark")]
IMAGENET_TRAIN, IMAGENET_VAL = 8, 3
SUBSET = ["n01443537", "n01484850", "n01494475"]   # the "200-class" variants, in miniature


def classnames_lines():
    return [f"{w} {n}" for w, n in IMAGENET]


def make_imagenet(root, split=True):
    d = os.path.join(root, "imagenet")
    write_text(os.path.join(d, "classnames.txt"), classnames_lines())
    for w, _ in IMAGENET:
        for k in range(IMAGENET_TRAIN):
            write_image(os.path.join(d, "images", "train", w, f"{w}_{k + 1}.JPEG"))
        for k in range(IMAGENET_VAL):
            write_image(os.path.join(d, "images", "val", w, f"ILSVRC2012_val_{w[-4:]}{k:04d}.JPEG"))
    n = len(IMAGENET)
    return Spec("ImageNet", "imagenet", [c for _, c in IMAGENET],
                (IMAGENET_TRAIN * n, IMAGENET_VAL * n, IMAGENET_VAL * n), train_per_class=IMAGENET_TRAIN,
                val_per_class=IMAGENET_VAL)


def make_imagenetv2(root, split=True):
    d = os.path.join(root, "imagenetv2")
    write_text(os.path.join(d, "classnames.txt"), classnames_lines())
    for label in range(len(IMAGENET)):
        for k in range(2):
            write_image(os.path.join(d, "imagenetv2-matched-frequency-format-val", str(label), f"{label:03d}{k}abc.jpeg"))
    n = 2 * len(IMAGENET)
    return Spec("ImageNetV2", "imagenetv2", [c for _, c in IMAGENET], (n, None, n),
                test_only=True)


def make_imagenet_sketch(root, split=True):
    """No classnames.txt here: it is found in the sibling imagenet/ folder (write that too)."""
    d = os.path.join(root, "imagenet-sketch")
    write_text(os.path.join(root, "imagenet", "classnames.txt"), classnames_lines())
    for w, _ in IMAGENET:
        for k in range(2):
            write_image(os.path.join(d, "images", w, f"sketch_{k}.JPEG"))
    n = 2 * len(IMAGENET)
    return Spec("ImageNetSketch", "imagenet-sketch", [c for _, c in IMAGENET], (n, None, n),
                test_only=True)


def _subset(root, folder, sub, name):
    d = os.path.join(root, folder)
    write_text(os.path.join(d, "classnames.txt"), classnames_lines())
    write_text(os.path.join(d, sub, "README.txt"), ["not a class"])
    for w in SUBSET:
        for k in range(2):
            write_image(os.path.join(d, sub, w, f"{k}.jpg"))
    names = [dict(IMAGENET)[w] for w in SUBSET]
    n = 2 * len(SUBSET)
    return Spec(name, folder, names, (n, None, n), test_only=True)


def make_imagenet_a(root, split=True):
    return _subset(root, "imagenet-adversarial", "imagenet-a", "ImageNetA")


def make_imagenet_r(root, split=True):
    return _subset(root, "imagenet-rendition", "imagenet-r", "ImageNetR")


WRITERS = {
    "ImageNet": make_imagenet, "Caltech101": make_caltech101, "OxfordPets": make_oxford_pets,
    "StanfordCars": make_stanford_cars, "OxfordFlowers": make_oxford_flowers, "Food101": make_food101,
    "FGVCAircraft": make_fgvc_aircraft, "SUN397": make_sun397, "DescribableTextures": make_dtd,
    "EuroSAT": make_eurosat, "UCF101": make_ucf101, "ImageNetV2": make_imagenetv2,
    "ImageNetSketch": make_imagenet_sketch, "ImageNetA": make_imagenet_a, "ImageNetR": make_imagenet_r,
}


def make_all(root, split=True):
    """All 15 layouts under ``root``; returns {DATASET.NAME: Spec}."""
    return {name: w(str(root), split=split) for name, w in WRITERS.items()}
