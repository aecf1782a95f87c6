from e2mim_engine.data import DATASET_REGISTRY, ZooDataset

# CoOp's renames (datasets/eurosat.py NEW_CNAMES).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(ZooDataset):
    dataset_dir = "eurosat"
    template = "a centered satellite photo of {}."
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    new_cnames = NEW_CNAMES
    layout = "eurosat/2750/<Class>/*.jpg and eurosat/split_zhou_EuroSAT.json"
    source = ("EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT (CoOp links "
              "http://madm.dfki.de/files/sentinel/EuroSAT.zip), extracted into eurosat/; "
              "split_zhou_EuroSAT.json from CoOp's DATASETS.md")
