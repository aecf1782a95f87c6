"""Hand-crafted prompt templates, as named sets so the choice is explicit and recorded.

"coop" is CoOp's zero-shot set (CUSTOM_TEMPLATES); "kgcoop" differs only for DTD. Other
repositories change DTD, Pets, Flowers and Food, which silently moves "zero-shot CLIP".
"""
from e2mim_engine.errors import ConfigError

COOP_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
TEMPLATE_SETS = {
    "coop": COOP_TEMPLATES,
    "kgcoop": {**COOP_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."},
}
# The 7 ImageNet templates CoOp's ZeroshotCLIP2 ensembles (plus the dataset's own template).
ENSEMBLE_TEMPLATES = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def dataset_template(cfg, dataset, template_set="coop"):
    """The single hand-crafted template for this run: DATASET.TEMPLATE if set, else the
    named set's entry for the dataset, else the dataset class's own template."""
    if cfg.DATASET.TEMPLATE:
        return cfg.DATASET.TEMPLATE
    if template_set not in TEMPLATE_SETS:
        raise ConfigError(f"Unknown template set '{template_set}'; valid: {', '.join(TEMPLATE_SETS)}.")
    table = TEMPLATE_SETS[template_set]
    if cfg.DATASET.NAME in table:
        return table[cfg.DATASET.NAME]
    return getattr(dataset, "template", "a photo of a {}.")


def fill(template, classname):
    return template.format(classname.replace("_", " "))
