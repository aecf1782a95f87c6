from e2mim_engine.data import DATASET_REGISTRY, ZooDataset


@DATASET_REGISTRY.register()
class Food101(ZooDataset):
    dataset_dir = "food-101"
    template = "a photo of {}, a type of food."
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    layout = "food-101/images/<class>/*.jpg and food-101/split_zhou_Food101.json"
    source = ("food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (extract under "
              "DATASET.ROOT); split_zhou_Food101.json from CoOp's DATASETS.md")
