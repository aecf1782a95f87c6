import os
import random
from collections import OrderedDict

from e2mim_engine.data import DATASET_REGISTRY, ZooDataset, split_per_class
from e2mim_engine.errors import DataError
from e2mim_engine.utils import read_json


@DATASET_REGISTRY.register()
class OxfordFlowers(ZooDataset):
    dataset_dir = "oxford_flowers"
    template = "a photo of a {}, a type of flower."
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    split_sources = ("imagelabels.mat", "cat_to_name.json")
    layout = "oxford_flowers/{jpg/, imagelabels.mat, cat_to_name.json, split_zhou_OxfordFlowers.json}"
    source = ("102flowers.tgz and imagelabels.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/; "
              "cat_to_name.json and split_zhou_OxfordFlowers.json from CoOp's DATASETS.md")

    def make_split(self, cfg):
        """CoOp's OxfordFlowers.read_data: image_%05d.jpg gets the i-th label of imagelabels.mat;
        per label (order of first appearance) 50/20/30 train/val/test."""
        from scipy.io import loadmat
        try:
            labels = loadmat(self.path("imagelabels.mat"))["labels"][0]
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise DataError(f"OxfordFlowers: cannot read {self.path('imagelabels.mat')} ({e!r}); download it "
                            f"again ({self.source}).") from None
        lab2cname = read_json(self.path("cat_to_name.json"))
        tracker = OrderedDict()
        for i, label in enumerate(labels):
            impath = os.path.join(self.image_dir, f"image_{str(i + 1).zfill(5)}.jpg")
            tracker.setdefault(int(label), []).append(impath)
        groups = []
        for label, impaths in tracker.items():
            if str(label) not in lab2cname:
                raise DataError(f"OxfordFlowers: label {label} of imagelabels.mat has no name in "
                                f"{self.path('cat_to_name.json')}.")
            groups.append((label - 1, lab2cname[str(label)], impaths))
        return split_per_class(groups, 0.5, 0.2, rng=random.Random(1))
