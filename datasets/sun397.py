import os

from e2mim_engine.data import DATASET_REGISTRY, Datum, ZooDataset, split_trainval
from e2mim_engine.errors import DataError


def sun_classname(folder):
    """CoOp's rename of a SUN397 class path: "a/apartment_building/outdoor" -> "outdoor apartment_building"
    (drop the first letter, reverse the remaining parts)."""
    return " ".join(folder.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(ZooDataset):
    dataset_dir = "sun397"
    template = "a photo of a {}."
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    split_sources = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")
    layout = "sun397/{SUN397/<letter>/<class>/.../*.jpg, ClassName.txt, split_zhou_SUN397.json}"
    source = ("SUN397.tar.gz and Partitions.zip (ClassName.txt, Training_01.txt, Testing_01.txt) from "
              "https://vision.princeton.edu/projects/2010/SUN/ extracted into sun397/; split_zhou_SUN397.json "
              "from CoOp's DATASETS.md")

    def make_split(self, cfg):
        with open(self.path("ClassName.txt")) as f:
            classnames = [line.strip()[1:] for line in f if line.strip()]   # remove the leading /
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_list(cname2lab, "Training_01.txt")
        test = self.read_list(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval, p_val=0.2)
        return train, val, test

    def read_list(self, cname2lab, filename):
        filepath = self.path(filename)
        items = []
        with open(filepath) as f:
            for n, line in enumerate(f, 1):
                imname = line.strip()[1:]   # remove the leading /
                if not imname:
                    continue
                folder = os.path.dirname(imname)
                if folder not in cname2lab:
                    raise DataError(f"{filepath}, line {n}: class {folder!r} is not in {self.path('ClassName.txt')}.")
                items.append(Datum(os.path.join(self.image_dir, imname), cname2lab[folder],
                                   classname=sun_classname(folder)))
        return items
