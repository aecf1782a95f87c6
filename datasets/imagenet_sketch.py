from e2mim_engine.data import DATASET_REGISTRY, CLASSNAMES_SOURCE, TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(TestOnlyDataset):
    """Test only. 1000 wnid folders, sorted; names from ImageNet's classnames.txt."""

    dataset_dir = "imagenet-sketch"
    template = "a photo of a {}."
    image_subdir = "images"
    layout = "imagenet-sketch/images/nXXXXXXXX/*.JPEG and imagenet-sketch/classnames.txt"
    source = ("ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch, extracted so that the 1000 "
              "class folders are in imagenet-sketch/images/ (rename the archive's top folder to images/ if it has "
              "another name); " + CLASSNAMES_SOURCE)
