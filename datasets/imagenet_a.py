from e2mim_engine.data import DATASET_REGISTRY, CLASSNAMES_SOURCE, TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetA(TestOnlyDataset):
    """Test only. 200 wnid folders, sorted, labelled 0..199; names from ImageNet's classnames.txt."""

    dataset_dir = "imagenet-adversarial"
    template = "a photo of a {}."
    image_subdir = "imagenet-a"
    layout = "imagenet-adversarial/imagenet-a/nXXXXXXXX/*.jpg (200 folders) and imagenet-adversarial/classnames.txt"
    source = ("imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples (extracted into "
              "imagenet-adversarial/); " + CLASSNAMES_SOURCE)
