"""Dataset base classes and the registry.

``DatasetBase`` is Dassl's container. ``BenchmarkDataset`` checks the folder, applies the
few-shot draw and base/new subsampling; its subclasses only say where their items come from:
``ZooDataset`` (a CoOp split file, else the dataset's own files) and ``TestOnlyDataset``
(the ImageNet variants). Each dataset class also declares ``template``, its hand-crafted
zero-shot prompt (CoOp's CUSTOM_TEMPLATES entry).
"""
import os
import random

from ..errors import DataError
from ..registry import Registry
from ..utils import logger, read_json, write_json
from .datum import Datum
from .folders import CLASSNAMES_SOURCE, find_classnames_file, layout_hint, list_class_folders, list_files, \
    read_classnames
from .splits import (dataset_writes_allowed, generate_fewshot_dataset, read_and_split_data, read_split, save_dataset_file, save_generated_split,
                     split_dataset_by_label, split_entries, subsample_classes)

DATASET_REGISTRY = Registry("dataset")


def build_dataset(cfg):
    if not cfg.DATASET.NAME:
        raise DataError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml "
                        f"or DATASET.NAME <name>. Valid names: {', '.join(DATASET_REGISTRY.names())}.")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def all_shots_note(k):
    """The log line for NUM_SHOTS < 1, which (as in Dassl) means no few-shot draw."""
    return (f"DATASET.NUM_SHOTS {k}: every training image is used (Dassl's meaning of NUM_SHOTS < 1: no "
            f"few-shot draw)")


def resolve_data_root(cfg, folder):
    """The absolute DATASET.ROOT, or the error for a missing one."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or ""))
    if not cfg.DATASET.ROOT or not os.path.isdir(root):
        raise DataError(f"The data root '{cfg.DATASET.ROOT}' is not a folder. Pass --root "
                        f"(DATASET.ROOT) pointing to the folder that holds '{folder}/'.")
    return root


class DatasetBase:
    """Dassl's container: train_x / train_u / val / test lists of Datum."""

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x, self._train_u, self._val, self._test = train_x, train_u, val, test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        # Dassl: max label + 1 of the training items.
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[y] for y in labels]

    split_dataset_by_label = staticmethod(split_dataset_by_label)


class BenchmarkDataset(DatasetBase):
    """Template for the benchmark datasets: a subclass names its folder and fills in
    ``load_splits``; this class checks the folder, applies the few-shot draw (cached as
    JSON under <dataset dir>/split_fewshot/) and base/new subsampling.
    """

    dataset_dir = ""      # folder under DATASET.ROOT
    template = "a photo of a {}."   # CoOp's hand-crafted zero-shot template
    layout = ""           # expected files, shown when something is missing
    source = ""           # where the data comes from
    check_files = True    # check that every listed image exists (cheap except for ImageNet)
    generated = False     # True for datasets that write their own files on first use (with ``generate``)

    def __init__(self, cfg):
        if cfg.DATASET.ROOT and self.generated:
            os.makedirs(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), exist_ok=True)
        self.root = resolve_data_root(cfg, self.dataset_dir)
        self.dataset_dir = os.path.join(self.root, self.dataset_dir)
        self.prepare(cfg)
        if not os.path.isdir(self.dataset_dir):
            raise self.missing(self.dataset_dir)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        train, val, test = self.load_splits(cfg)
        if self.check_files:
            self.check_exists(train, val, test)
        train, val = self.few_shot(cfg, train, val)
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def check_root(cls, cfg):
        """Before anything is written: the DataError for a DATASET.ROOT that does not exist;
        for a generated dataset whose folder does not exist yet, the note that it is about to
        be generated there (a mistyped --root would otherwise fill a new folder silently).
        None when there is nothing to say."""
        folder = cls.dataset_dir
        if not cls.generated:
            resolve_data_root(cfg, folder)
            return None
        if not cfg.DATASET.ROOT:
            resolve_data_root(cfg, folder)
        path = os.path.join(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), folder)
        if os.path.isdir(path):
            return None
        return (f"{path} does not exist: {cls.__name__} will be generated there now. If you meant an existing "
                f"copy, stop this run and check --root (DATASET.ROOT).")

    def prepare(self, cfg):
        """A generated dataset is written on first use (the whole folder, by ``generate``)."""
        if self.generated and not os.path.isdir(self.dataset_dir):
            logger.info(f"Generating {type(self).__name__} in {self.dataset_dir}")
            self.generate(self.dataset_dir)

    def generate(self, dataset_dir):
        raise NotImplementedError

    def load_splits(self, cfg):
        raise NotImplementedError

    def missing(self, path):
        """The error for an expected file or folder that is not there."""
        return DataError(f"{type(self).__name__}: expected {path} but it does not exist. Expected layout under "
                         f"DATASET.ROOT: {self.layout or self.dataset_dir}. Source: {self.source or 'see DATASETS.md'}."
                         f"{layout_hint(path)}")

    def check_exists(self, *splits):
        missing = [d.impath for s in splits for d in s if not os.path.isfile(d.impath)]
        if missing:
            raise DataError(f"{type(self).__name__}: {len(missing)} image(s) listed in the split are missing, "
                            f"e.g. {missing[0]}. The archive may be half-extracted or the split file may "
                            f"belong to another version of the data; re-extract it under {self.dataset_dir}.")

    def few_shot(self, cfg, train, val):
        """The few-shot draw of DATASET.NUM_SHOTS per class (SEED's draw, cached as JSON under
        split_fewshot/ so every run of a seed trains on the same images; a cache that no
        longer matches the data is drawn again). A dataset changes what is drawn and how it
        is stored through draw_few_shot, read_few_shot and few_shot_entries."""
        k, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
        if k < 1:
            logger.info(all_shots_note(k))
            return self.all_shots(train, val)
        # CoOp keeps min(K, 4) validation images per class; another VAL_SHOTS is taken as asked,
        # beyond K too (a finer validation instrument; the training draw comes first and is the same).
        k_val = min(k, 4) if cfg.DATASET.VAL_SHOTS == 4 else cfg.DATASET.VAL_SHOTS
        if seed < 0:
            logger.info("SEED < 0: the few-shot draw is random and not cached")
            return self.draw_few_shot(train, val, k, k_val, random.Random())
        # CoOp's name for its cap of 4; another cap is another draw of the validation images.
        val_tag = "" if cfg.DATASET.VAL_SHOTS == 4 else f"-val_{cfg.DATASET.VAL_SHOTS}"
        path = os.path.join(self.split_fewshot_dir, f"shot_{k}-seed_{seed}{val_tag}.json")
        if os.path.exists(path):
            logger.info(f"Loading preprocessed few-shot data from {path}")
            try:
                data = read_json(path)
                # a -val_<V> file records the validation count it was drawn with: one written before
                # VAL_SHOTS could exceed NUM_SHOTS holds fewer and is drawn again
                drawn = None if val_tag and data.get("k_val") != k_val else self.read_few_shot(data, train, val)
            except (ValueError, KeyError, TypeError, AttributeError):
                drawn = None
            if drawn is not None:
                return drawn
            logger.info(f"The few-shot cache {path} does not match the data; drawing again")
        # CoOp's cache of the same draw is a pickle of Dassl objects: never unpickled here.
        logger.info(f"Creating a {k}-shot dataset")
        drawn = self.draw_few_shot(train, val, k, k_val, random.Random(seed))
        if dataset_writes_allowed():
            payload = self.few_shot_entries(*drawn)
            if val_tag:
                payload["k_val"] = k_val
            if save_dataset_file(path, lambda: write_json(payload, path), "few-shot draw"):
                logger.info(f"Saving preprocessed few-shot data to {path}")
        return drawn

    def all_shots(self, train, val):
        """(train, val) of a run without a few-shot draw."""
        return train, val

    def draw_few_shot(self, train, val, k, k_val, rng):
        """Dassl's draw: K items per class of train, K_val (``few_shot``'s) of val,
        from one generator."""
        return generate_fewshot_dataset(train, num_shots=k, rng=rng), \
            generate_fewshot_dataset(val, num_shots=k_val, rng=rng)

    def read_few_shot(self, data, train, val):
        """(train, val) of a cached draw (``data``: the JSON), or None when it does not fit."""
        by_path = {d.impath: d for d in train + val}
        prefix = self.image_prefix()
        return ([by_path[os.path.join(prefix, p)] for p, _, _ in data["train"]],
                [by_path[os.path.join(prefix, p)] for p, _, _ in data["val"]])

    def few_shot_entries(self, train, val):
        """The JSON of a draw: split-file rows relative to image_prefix()."""
        prefix = self.image_prefix()
        return {"train": split_entries(train, prefix), "val": split_entries(val, prefix)}

    def image_prefix(self):
        """Folder the few-shot cache stores paths relative to (portable across machines)."""
        return getattr(self, "image_dir", self.dataset_dir)


class ZooDataset(BenchmarkDataset):
    """A benchmark whose items come from a CoOp split file when there is one, otherwise
    from the dataset's own files (``make_split``), the split then being saved as CoOp does.

    A subclass declares where things are:
      image_subdir   the folder split paths are relative to ("" = the dataset folder);
      split_file     the CoOp split file ("" = none: the split is made on every run);
      required       paths under the dataset folder needed in any case (default: image_subdir);
      split_sources  paths needed only to make the split;
    and either overrides ``make_split`` or keeps the default, CoOp's read_and_split_data of a
    folder-per-class tree under image_subdir without the ``ignored`` folders and with the
    class names renamed by ``new_cnames``.
    """

    split_file = ""
    image_subdir = ""
    required = None
    split_sources = ()
    ignored = ()
    new_cnames = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Set on the class, not per instance: the layout checker reads it without loading.
        if cls.required is None:
            cls.required = (cls.image_subdir,) if cls.image_subdir else ()

    def path(self, *parts):
        return os.path.join(self.dataset_dir, *parts)

    def require(self, *relpaths):
        for rel in relpaths:
            p = self.path(rel)
            if not os.path.exists(p):
                raise self.missing(p)

    def load_splits(self, cfg):
        self.image_dir = self.path(self.image_subdir) if self.image_subdir else self.dataset_dir
        self.require(*self.required)
        split_path = self.path(self.split_file) if self.split_file else ""
        if split_path and os.path.exists(split_path):
            logger.info(f"Reading split from {split_path}")
            return read_split(split_path, self.image_dir)
        absent = [self.path(p) for p in self.split_sources if not os.path.exists(self.path(p))]
        if absent:
            if split_path:
                raise DataError(
                    f"{type(self).__name__}: the split file {split_path} is missing, and so is {absent[0]}, "
                    f"which is needed to make it. Put {self.split_file} there (source: {self.source}).")
            raise self.missing(absent[0])
        train, val, test = self.make_split(cfg)
        if split_path:
            save_generated_split(train, val, test, split_path, self.image_dir)
        return train, val, test

    def make_split(self, cfg):
        return read_and_split_data(self.image_dir, ignored=self.ignored, new_cnames=self.new_cnames)


class TestOnlyDataset(BenchmarkDataset):
    """An evaluation-only benchmark (the ImageNet variants): as in CoOp, train_x and test are
    the same items, there is no val, and NUM_SHOTS / SUBSAMPLE_CLASSES do not apply.

    By default the items are the wnid folders of ``image_subdir`` (see read_wnid_folders)."""

    check_files = False
    image_subdir = ""
    split_note = "test only"

    def __init__(self, cfg):
        self.root = resolve_data_root(cfg, self.dataset_dir)
        self.dataset_dir = os.path.join(self.root, self.dataset_dir)
        if not os.path.isdir(self.dataset_dir):
            raise self.missing(self.dataset_dir)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        data = self.load_data(cfg)
        if not data:
            raise DataError(f"{type(self).__name__}: no images found under {self.dataset_dir}. "
                            f"Expected layout: {self.layout}. Source: {self.source}.")
        if cfg.DATASET.NUM_SHOTS >= 1 or str(cfg.DATASET.SUBSAMPLE_CLASSES).lower() != "all":
            logger.info(f"{type(self).__name__} is test-only: DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES "
                        f"are ignored (all items, all classes), as in CoOp")
        DatasetBase.__init__(self, train_x=data, val=None, test=data)

    def load_splits(self, cfg):
        data = self.load_data(cfg)
        return data, [], data

    def load_data(self, cfg):
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        return self.read_wnid_folders(self.image_dir)

    def classnames_map(self):
        path = find_classnames_file(self.dataset_dir, self.root)
        if path is None:
            raise DataError(
                f"{type(self).__name__}: expected {os.path.join(self.dataset_dir, 'classnames.txt')} (or "
                f"{os.path.join(self.root, 'imagenet', 'classnames.txt')}) but neither exists. Copy ImageNet's "
                f"classnames.txt next to the images; source: {CLASSNAMES_SOURCE}.")
        return read_classnames(path)

    def read_wnid_folders(self, image_dir, ignored=("README.txt",)):
        """Sorted wnid folders, label = position, class name from classnames.txt (CoOp's rule)."""
        if not os.path.isdir(image_dir):
            raise self.missing(image_dir)
        classnames = self.classnames_map()
        folders = list_class_folders(image_dir, ignored=ignored)
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise DataError(f"{type(self).__name__}: the folder {os.path.join(image_dir, unknown[0])} is not a "
                            f"class in classnames.txt ({len(unknown)} such folder(s)). Remove stray folders or "
                            f"use ImageNet's classnames.txt ({CLASSNAMES_SOURCE}).")
        items = []
        for label, folder in enumerate(folders):
            d = os.path.join(image_dir, folder)
            names = list_files(d)
            if not names:
                raise DataError(f"{type(self).__name__}: the class folder {d} has no images. The archive may be "
                                f"half-extracted: extract it again (source: {self.source}).")
            prefix = d + os.sep
            items += [Datum(prefix + n, label, classname=classnames[folder]) for n in names]
        return items
