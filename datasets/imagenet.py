import bisect
import os
from collections.abc import Sequence

from e2mim_engine.data import (CLASSNAMES_SOURCE, DATASET_REGISTRY, BenchmarkDataset, Datum, index_class_folders,
                               read_classnames)
from e2mim_engine.data.splits import split_entries
from e2mim_engine.errors import DataError

INDEX_FILE = "images_index.json"


class FolderItems(Sequence):
    """The items of a listed split (``[(folder, [file names]), ...]``, label = folder position),
    made into Datum objects only when accessed: 1.28 M objects take seconds to build, and a
    few-shot run needs only the K drawn per class."""

    def __init__(self, split_dir, part, classnames):
        self.split_dir, self.part, self.classnames = split_dir, part, classnames
        self.starts = []
        n = 0
        for _, names in part:
            self.starts.append(n)
            n += len(names)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        label = bisect.bisect_right(self.starts, i) - 1
        folder, names = self.part[label]
        return Datum(os.path.join(self.split_dir, folder, names[i - self.starts[label]]), label,
                     classname=self.classnames[folder])

    def __iter__(self):
        for label, (folder, names) in enumerate(self.part):
            prefix, cname = os.path.join(self.split_dir, folder) + os.sep, self.classnames[folder]
            for n in names:
                yield Datum(prefix + n, label, classname=cname)

    def materialize(self):
        return list(self)


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    """ImageNet as CoOp reads it: train from images/train, images/val used as both val and test,
    class folders sorted, labels = folder position, names from classnames.txt.

    CoOp caches the listing in preprocessed.pkl; we cache it as JSON (images_index.json, file
    names only, revalidated by one stat per class folder) and never read CoOp's pickle.
    Few-shot: only train is drawn (CoOp does not draw val for ImageNet), straight from the
    index, so a 16-shot run never builds 1.28 M items; the draw equals Dassl's on the full list.
    """

    dataset_dir = "imagenet"
    template = "a photo of a {}."
    check_files = False   # the items come from listing the folders
    layout = "imagenet/images/train/nXXXXXXXX/*.JPEG, imagenet/images/val/nXXXXXXXX/*.JPEG, imagenet/classnames.txt"
    source = ("ILSVRC2012 train and val from https://image-net.org (val sorted into wnid folders, e.g. with the "
              "valprep.sh script commonly used for PyTorch); " + CLASSNAMES_SOURCE)
    split_note = "official (train/, val/ = val and test)"
    required = ("images/train", "images/val", "classnames.txt")   # read by the layout checker

    def load_splits(self, cfg):
        self.image_dir = os.path.join(self.dataset_dir, "images")
        for p in (os.path.join(self.image_dir, "train"), os.path.join(self.image_dir, "val"),
                  os.path.join(self.dataset_dir, "classnames.txt")):
            if not os.path.exists(p):
                raise self.missing(p)
        classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
        index = index_class_folders(self.image_dir, ("train", "val"), os.path.join(self.dataset_dir, INDEX_FILE))
        self.check_index(index, classnames)
        train = FolderItems(os.path.join(self.image_dir, "train"), index["train"], classnames)
        test = FolderItems(os.path.join(self.image_dir, "val"), index["val"], classnames).materialize()
        return train, test, test

    def check_index(self, index, classnames):
        for split in ("train", "val"):
            d = os.path.join(self.image_dir, split)
            folders = [f for f, _ in index[split]]
            unknown = [f for f in folders if f not in classnames]
            if unknown:
                raise DataError(f"ImageNet: the class folder {os.path.join(d, unknown[0])} is not in "
                                f"{os.path.join(self.dataset_dir, 'classnames.txt')}. Remove stray folders, or get "
                                f"{CLASSNAMES_SOURCE}.")
            present = set(folders)
            absent = [w for w in classnames if w not in present]
            if absent:
                raise DataError(
                    f"ImageNet: {d} has {len(folders)} class folders but classnames.txt lists {len(classnames)}; "
                    f"missing e.g. {os.path.join(d, absent[0])}. The archive may be half-extracted (the train "
                    f"archive holds one tar per class) or val/ not sorted into class folders: extract it again.")
            for folder, names in index[split]:
                if not names:
                    raise DataError(f"ImageNet: the class folder {os.path.join(d, folder)} has no images. The "
                                    f"archive may be half-extracted: extract that class again.")

    # CoOp draws ImageNet's few-shot train only (val stays the full val/test set), straight
    # from the index (BenchmarkDataset.few_shot does the caching).
    def all_shots(self, train, val):
        return (train.materialize() if isinstance(train, FolderItems) else train), val

    def draw_few_shot(self, train, val, k, rng):
        """Dassl's draw: per label in order of first appearance (= folder order here),
        ``random.sample(items, K)``; ``sample`` picks positions from the length alone, so
        sampling the file names of a folder picks the same items as sampling its Datums."""
        if not isinstance(train, FolderItems):
            raise TypeError("ImageNet.few_shot expects the FolderItems made by load_splits")
        out = []
        for label, (folder, names) in enumerate(train.part):
            chosen = rng.sample(names, k) if len(names) >= k else names
            prefix, cname = os.path.join(train.split_dir, folder) + os.sep, train.classnames[folder]
            out += [Datum(prefix + n, label, classname=cname) for n in chosen]
        return out, val

    def few_shot_entries(self, train, val):
        return {"train": split_entries(train, self.image_prefix())}

    def read_few_shot(self, data, train, val):
        """The cached items if every one is still in the index (checked by bisection), else None."""
        pos = {folder: label for label, (folder, _) in enumerate(train.part)}
        out = []
        for rel, _, _ in data["train"]:
            split, folder, name = rel.split("/")
            label = pos[folder]
            names = train.part[label][1]
            j = bisect.bisect_left(names, name)
            if split != "train" or j == len(names) or names[j] != name:
                return None
            out.append(Datum(os.path.join(train.split_dir, folder, name), label, classname=train.classnames[folder]))
        return out, val

