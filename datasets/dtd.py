from e2mim_engine.data import DATASET_REGISTRY, ZooDataset


@DATASET_REGISTRY.register()
class DescribableTextures(ZooDataset):
    dataset_dir = "dtd"
    template = "{} texture."
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    layout = "dtd/images/<class>/*.jpg (plus dtd/imdb/, dtd/labels/) and dtd/split_zhou_DescribableTextures.json"
    source = ("dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ (extract under DATASET.ROOT); "
              "split_zhou_DescribableTextures.json from CoOp's DATASETS.md")
