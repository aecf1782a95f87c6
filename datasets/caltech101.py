from e2mim_engine.data import DATASET_REGISTRY, ZooDataset


@DATASET_REGISTRY.register()
class Caltech101(ZooDataset):
    dataset_dir = "caltech-101"
    template = "a photo of a {}."
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    # CoOp's datasets/caltech101.py IGNORED and NEW_CNAMES.
    ignored = ("BACKGROUND_Google", "Faces_easy")
    new_cnames = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
    layout = "caltech-101/101_ObjectCategories/<class>/*.jpg and caltech-101/split_zhou_Caltech101.json"
    source = ("Caltech101 images (101_ObjectCategories.tar.gz from the Caltech data site); the split "
              "file split_zhou_Caltech101.json is linked from CoOp's DATASETS.md")
