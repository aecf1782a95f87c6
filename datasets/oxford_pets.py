import os

from e2mim_engine.data import DATASET_REGISTRY, Datum, ZooDataset, split_trainval
from e2mim_engine.errors import DataError


def read_pets_annotations(filepath, image_dir):
    """CoOp's OxfordPets.read_data: lines ``<imname> <class id> <species> <breed id>``; label =
    class id - 1; class name = the image name without its trailing number, lowercased."""
    items = []
    with open(filepath) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ")
            if len(parts) != 4:
                raise DataError(f"{filepath}, line {n}: expected '<image> <class id> <species> <breed id>', "
                                f"got {line!r}.")
            imname, label = parts[0], int(parts[1]) - 1
            breed = "_".join(imname.split("_")[:-1]).lower()
            items.append(Datum(os.path.join(image_dir, imname + ".jpg"), label, classname=breed))
    return items


@DATASET_REGISTRY.register()
class OxfordPets(ZooDataset):
    dataset_dir = "oxford_pets"
    template = "a photo of a {}, a type of pet."
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    split_sources = ("annotations/trainval.txt", "annotations/test.txt")
    layout = "oxford_pets/images/*.jpg, oxford_pets/annotations/, oxford_pets/split_zhou_OxfordPets.json"
    source = ("images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/; "
              "split_zhou_OxfordPets.json from CoOp's DATASETS.md (Google Drive link)")

    def make_split(self, cfg):
        trainval = read_pets_annotations(self.path("annotations", "trainval.txt"), self.image_dir)
        test = read_pets_annotations(self.path("annotations", "test.txt"), self.image_dir)
        train, val = split_trainval(trainval, p_val=0.2)
        return train, val, test
