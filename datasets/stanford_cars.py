import os

from e2mim_engine.data import DATASET_REGISTRY, Datum, ZooDataset, split_trainval
from e2mim_engine.errors import DataError


def car_classname(name):
    """CoOp moves the year to the front: "AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV"."""
    names = name.split(" ")
    names.insert(0, names.pop(-1))
    return " ".join(names)


def read_cars_annotations(dataset_dir, image_folder, anno_file, meta_file):
    from scipy.io import loadmat
    try:
        annos = loadmat(anno_file)["annotations"][0]
        meta = loadmat(meta_file)["class_names"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"StanfordCars: cannot read {anno_file} / {meta_file} ({e!r}); download them again "
                        f"(car_devkit.tgz and cars_test_annos_withlabels.mat).") from None
    items = []
    for a in annos:
        imname = str(a["fname"][0])
        label = int(a["class"][0, 0]) - 1
        classname = car_classname(str(meta[label][0]))
        items.append(Datum(os.path.join(dataset_dir, image_folder, imname), label, classname=classname))
    return items


@DATASET_REGISTRY.register()
class StanfordCars(ZooDataset):
    dataset_dir = "stanford_cars"
    template = "a photo of a {}."
    image_subdir = ""   # split paths are relative to the dataset folder (cars_train/..., cars_test/...)
    split_file = "split_zhou_StanfordCars.json"
    required = ("cars_train", "cars_test")
    split_sources = ("devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat")
    layout = ("stanford_cars/{cars_train/, cars_test/, devkit/, cars_test_annos_withlabels.mat, "
              "split_zhou_StanfordCars.json}")
    source = ("cars_train.tgz, cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat from the "
              "Stanford Cars page (http://ai.stanford.edu/~jkrause/cars/car_dataset.html; the original links "
              "are often dead, mirrors exist on Kaggle); split_zhou_StanfordCars.json from CoOp's DATASETS.md")

    def make_split(self, cfg):
        meta = self.path("devkit", "cars_meta.mat")
        trainval = read_cars_annotations(self.dataset_dir, "cars_train", self.path("devkit", "cars_train_annos.mat"),
                                         meta)
        test = read_cars_annotations(self.dataset_dir, "cars_test", self.path("cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval, p_val=0.2)
        return train, val, test
