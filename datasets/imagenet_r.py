from e2mim_engine.data import DATASET_REGISTRY, CLASSNAMES_SOURCE, TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetR(TestOnlyDataset):
    """Test only. 200 wnid folders, sorted, labelled 0..199; names from ImageNet's classnames.txt."""

    dataset_dir = "imagenet-rendition"
    template = "a photo of a {}."
    image_subdir = "imagenet-r"
    layout = "imagenet-rendition/imagenet-r/nXXXXXXXX/*.jpg (200 folders) and imagenet-rendition/classnames.txt"
    source = ("imagenet-r.tar from https://github.com/hendrycks/imagenet-r (extracted into "
              "imagenet-rendition/); " + CLASSNAMES_SOURCE)
