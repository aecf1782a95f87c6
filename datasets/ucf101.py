import os
import re

from e2mim_engine.data import DATASET_REGISTRY, Datum, ZooDataset, split_trainval
from e2mim_engine.errors import DataError


def ucf_classname(action):
    """CoOp's rename: split CamelCase with "_" ("ApplyEyeMakeup" -> "Apply_Eye_Makeup"); it is also the
    folder name in UCF-101-midframes/."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(ZooDataset):
    dataset_dir = "ucf101"
    template = "a photo of a person doing {}."
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    split_sources = ("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
                     "ucfTrainTestlist/testlist01.txt")
    layout = "ucf101/UCF-101-midframes/<Class_Name>/*.jpg and ucf101/split_zhou_UCF101.json"
    source = ("UCF-101-midframes.zip (middle frame of each video) and split_zhou_UCF101.json, both from CoOp's "
              "DATASETS.md (Google Drive); ucfTrainTestlist/ comes from the UCF101 page "
              "(https://www.crcv.ucf.edu/data/UCF101.php)")

    def make_split(self, cfg):
        cname2lab = {}
        filepath = self.path("ucfTrainTestlist", "classInd.txt")
        with open(filepath) as f:
            for n, line in enumerate(f, 1):
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                if len(parts) != 2:
                    raise DataError(f"{filepath}, line {n}: expected '<id> <ClassName>', got {line.strip()!r}.")
                cname2lab[parts[1]] = int(parts[0]) - 1
        trainval = self.read_list(cname2lab, "trainlist01.txt")
        test = self.read_list(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval, p_val=0.2)
        return train, val, test

    def read_list(self, cname2lab, filename):
        filepath = self.path("ucfTrainTestlist", filename)
        items = []
        with open(filepath) as f:
            for n, line in enumerate(f, 1):
                entry = line.strip().split(" ")[0]   # trainlist: "<Action>/<video>.avi <label>"
                if not entry:
                    continue
                action, filename_ = entry.split("/")
                if action not in cname2lab:
                    raise DataError(f"{filepath}, line {n}: class {action!r} is not in classInd.txt.")
                renamed = ucf_classname(action)
                impath = os.path.join(self.image_dir, renamed, filename_.replace(".avi", ".jpg"))
                items.append(Datum(impath, cname2lab[action], classname=renamed))
        return items
