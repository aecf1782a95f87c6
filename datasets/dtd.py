from e2mim_engine.data import DATASET_REGISTRY, ZooDataset, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(ZooDataset):
    dataset_dir = "dtd"
    template = "{} texture."
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    required = ("images",)
    layout = "dtd/images/<class>/*.jpg (plus dtd/imdb/, dtd/labels/) and dtd/split_zhou_DescribableTextures.json"
    source = ("dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ (extract under DATASET.ROOT); "
              "split_zhou_DescribableTextures.json from CoOp's DATASETS.md")

    def make_split(self, cfg):
        return read_and_split_data(self.image_dir)
