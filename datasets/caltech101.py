import os

from e2mim_engine.data import (DATASET_REGISTRY, BenchmarkDataset, read_and_split_data, read_split,
                               save_generated_split)

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(BenchmarkDataset):
    dataset_dir = "caltech-101"
    template = "a photo of a {}."
    layout = "caltech-101/101_ObjectCategories/<class>/*.jpg and caltech-101/split_zhou_Caltech101.json"
    split_file = "split_zhou_Caltech101.json"   # read by the layout checker
    required = ("101_ObjectCategories",)
    source = ("Caltech101 images (101_ObjectCategories.tar.gz from the Caltech data site); the split "
              "file split_zhou_Caltech101.json is linked from CoOp's DATASETS.md")

    def load_splits(self, cfg):
        self.image_dir = os.path.join(self.dataset_dir, "101_ObjectCategories")
        if not os.path.isdir(self.image_dir):
            raise self.missing(self.image_dir)
        split_path = os.path.join(self.dataset_dir, "split_zhou_Caltech101.json")
        if os.path.exists(split_path):
            return read_split(split_path, self.image_dir)
        train, val, test = read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
        save_generated_split(train, val, test, split_path, self.image_dir)
        return train, val, test
