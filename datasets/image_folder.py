"""A custom dataset by config only: DATASET.NAME "ImageFolder" plus DATASET.CUSTOM.* (DATASETS.md).

Layouts (DATASET.CUSTOM.LAYOUT):
  split   DIR/train/<class>/*, DIR/val/<class>/*, DIR/test/<class>/*; val/ missing: 20% of each
          train class (P_VAL) is held out; test/ missing: val is also the test set; both missing:
          train/ is split per class like "single".
  single  DIR/images/<class>/* (or DIR/<class>/*), split per class P_TRAIN / P_VAL / rest.
  auto    "split" if DIR/train/ exists, else "single".
Classes are the train (or single) class folders in sorted order; labels follow that order.
Whenever part of the split is drawn at random it is saved (DIR/split_custom.json unless
DATASET.CUSTOM.SPLIT_FILE says otherwise) and read as is on later runs: delete it after
adding or removing images. Only files with image extensions are listed.
"""
import json
import os
import random

from e2mim_engine.data import (DATASET_REGISTRY, IMAGE_EXTENSIONS, BenchmarkDataset, Datum, list_class_folders,
                               list_files, read_classnames, read_split, resolve_data_root, save_generated_split,
                               split_per_class, split_trainval)
from e2mim_engine.errors import ConfigError, DataError
from e2mim_engine.utils import logger

LAYOUTS = ("auto", "split", "single")
RESERVED = ("split_fewshot",)


def read_classname_map(path):
    """JSON {"folder": "name"} or text lines "<folder> <name>"."""
    if path.lower().endswith(".json"):
        try:
            with open(path) as f:
                data = json.load(f)
        except ValueError as e:
            raise DataError(f"The class-name map {path} is not valid JSON ({e}).") from None
        if not isinstance(data, dict):
            raise DataError(f'The class-name map {path} must be a JSON object {{"folder": "class name", ...}}.')
        return {str(k): str(v) for k, v in data.items()}
    return dict(read_classnames(path))


@DATASET_REGISTRY.register()
class ImageFolder(BenchmarkDataset):
    dataset_dir = ""
    template = "a photo of a {}."
    source = "your own images (DATASET.CUSTOM.DIR); see 'Custom datasets' in DATASETS.md"
    layout = ("<DIR>/train/<class>/*, <DIR>/val/<class>/*, <DIR>/test/<class>/* (LAYOUT split) or "
              "<DIR>/images/<class>/* (LAYOUT single)")

    def __init__(self, cfg):
        c = cfg.DATASET.CUSTOM
        if not c.DIR:
            raise ConfigError("DATASET.NAME ImageFolder needs DATASET.CUSTOM.DIR: the dataset folder under "
                              "DATASET.ROOT (or an absolute path). See 'Custom datasets' in DATASETS.md.")
        if str(c.LAYOUT).lower() not in LAYOUTS:
            raise ConfigError(f"DATASET.CUSTOM.LAYOUT must be one of {', '.join(LAYOUTS)}; got '{c.LAYOUT}'.")
        d = os.path.expanduser(c.DIR).rstrip("/\\") or c.DIR
        if os.path.isabs(d):
            cfg = cfg.clone()
            cfg.defrost()
            cfg.DATASET.ROOT = os.path.dirname(d)
            cfg.freeze()
            d = os.path.basename(d)
        self.dataset_dir = d
        if cfg.DATASET.TEMPLATE:
            self.template = cfg.DATASET.TEMPLATE
        super().__init__(cfg)

    @classmethod
    def check_root(cls, cfg):
        d = os.path.expanduser(cfg.DATASET.CUSTOM.DIR or "").rstrip("/\\")
        if d and os.path.isabs(d):
            if not os.path.isdir(d):
                raise DataError(f"DATASET.CUSTOM.DIR {d} is not a folder. Point it to your dataset folder "
                                f"(see 'Custom datasets' in DATASETS.md).")
            return None
        resolve_data_root(cfg, d or "<DATASET.CUSTOM.DIR>")
        return None

    # ---- helpers -----------------------------------------------------------------------
    def _name_map(self, cfg):
        path = cfg.DATASET.CUSTOM.CLASSNAMES
        if not path:
            return {}
        path = os.path.expanduser(path)
        candidates = [path] if os.path.isabs(path) else [os.path.join(self.dataset_dir, path), path]
        for p in candidates:
            if os.path.isfile(p):
                return read_classname_map(p)
        raise DataError(f"The class-name map DATASET.CUSTOM.CLASSNAMES='{path}' was not found (looked for "
                        f"{' and '.join(os.path.abspath(p) for p in candidates)}).")

    def _images(self, class_dir):
        names = list_files(class_dir, images_only=True)
        if not names:
            raise DataError(f"ImageFolder: the class folder {class_dir} has no images (files ending in "
                            f"{', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder "
                            f"(or list it in DATASET.CUSTOM.IGNORED).")
        return [os.path.join(class_dir, n) for n in names]

    def _classes(self, folder, ignored):
        classes = list_class_folders(folder, ignored=ignored)
        if not classes:
            raise DataError(f"ImageFolder: {folder} has no class folders. Expected {self.layout}, with "
                            f"DATASET.CUSTOM.DIR = {self.dataset_dir}.")
        return classes

    def _read_folder(self, folder, label_of, names):
        items = []
        for cls in list_class_folders(folder, ignored=self._ignored):
            if cls not in label_of:
                raise DataError(f"ImageFolder: the class folder {os.path.join(folder, cls)} has no counterpart in "
                                f"{os.path.join(self.dataset_dir, 'train')}; every class must have training images.")
            items += [Datum(p, label_of[cls], classname=names[cls]) for p in self._images(os.path.join(folder, cls))]
        return items

    # ---- the split ---------------------------------------------------------------------------
    def load_splits(self, cfg):
        c = cfg.DATASET.CUSTOM
        self._ignored = tuple(c.IGNORED) + RESERVED
        layout = str(c.LAYOUT).lower()
        if layout == "auto":
            layout = "split" if os.path.isdir(os.path.join(self.dataset_dir, "train")) else "single"
        if layout == "split":
            self.image_dir = self.dataset_dir
            if not os.path.isdir(os.path.join(self.dataset_dir, "train")):
                raise self.missing(os.path.join(self.dataset_dir, "train"))
        else:
            images = os.path.join(self.dataset_dir, "images")
            self.image_dir = images if os.path.isdir(images) else self.dataset_dir
        split_path = os.path.expanduser(c.SPLIT_FILE) if c.SPLIT_FILE else "split_custom.json"
        if not os.path.isabs(split_path):
            split_path = os.path.join(self.dataset_dir, split_path)
        if os.path.exists(split_path):
            logger.info(f"Reading split from {split_path}")
            return read_split(split_path, self.image_dir)

        name_map = self._name_map(cfg)
        base = os.path.join(self.dataset_dir, "train") if layout == "split" else self.image_dir
        classes = self._classes(base, self._ignored)
        if name_map and not any(cls in name_map for cls in classes):
            logger.info(f"Warning: no class folder of {base} is named in {c.CLASSNAMES}; folder names are used")
        names = {cls: name_map.get(cls, cls) for cls in classes}
        label_of = {cls: i for i, cls in enumerate(classes)}
        rng = random.Random(1)
        drawn = True
        if layout == "single":
            groups = [(label_of[cls], names[cls], self._images(os.path.join(base, cls))) for cls in classes]
            train, val, test = split_per_class(groups, c.P_TRAIN, c.P_VAL, rng=rng)
        else:
            val_dir, test_dir = os.path.join(self.dataset_dir, "val"), os.path.join(self.dataset_dir, "test")
            has_val, has_test = os.path.isdir(val_dir), os.path.isdir(test_dir)
            if not has_val and not has_test:
                groups = [(label_of[cls], names[cls], self._images(os.path.join(base, cls))) for cls in classes]
                train, val, test = split_per_class(groups, c.P_TRAIN, c.P_VAL, rng=rng)
            else:
                train = self._read_folder(base, label_of, names)
                drawn = not has_val
                if has_val:
                    val = self._read_folder(val_dir, label_of, names)
                else:
                    train, val = split_trainval(train, p_val=c.P_VAL, rng=rng)
                if has_test:
                    test = self._read_folder(test_dir, label_of, names)
                else:
                    logger.info(f"No {test_dir}: the val set is also used as the test set")
                    test = val
        if drawn:
            save_generated_split(train, val, test, split_path, self.image_dir)
        return train, val, test
