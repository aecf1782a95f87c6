"""Hand-crafted prompt templates, as named sets so the choice is explicit and recorded.

Each dataset class declares its own CoOp template (``template``, CoOp's CUSTOM_TEMPLATES
entry); a named set lists only where it departs from those. "coop" is CoOp's zero-shot set
itself; "kgcoop" differs only for DTD; "tcp" for DTD and Aircraft; "prograd" for Pets, Flowers,
Aircraft, DTD and Food. Other repositories change DTD, Pets, Flowers and
Food, which silently moves "zero-shot CLIP".
"""
from e2mim_engine.errors import ConfigError

# set name -> {DATASET.NAME: template}, overriding the dataset's own template.
TEMPLATE_SETS = {
    "coop": {},
    "kgcoop": {"DescribableTextures": "a photo of a {}, a type of texture."},
    # TCP's hand-crafted view (its CUSTOM_TEMPLATES_ori): KgCoOp's DTD, and its own aircraft wording.
    "tcp": {"DescribableTextures": "a photo of a {}, a type of texture.",
            "FGVCAircraft": "a photo of an aircraft {}."},
    # ProGrad's prompts put the class name last, so that their words can initialise the context.
    "prograd": {
        "OxfordPets": "a type of pet, a photo of a {}.",
        "OxfordFlowers": "a type of flower, a photo of a {}.",
        "FGVCAircraft": "a type of aircraft, a photo of a {}.",
        "DescribableTextures": "a texture of {}.",
        "Food101": "a type of food, a photo of {}.",
    },
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
    named set's override for the dataset, else the dataset's own template."""
    if cfg.DATASET.TEMPLATE:
        return cfg.DATASET.TEMPLATE
    if template_set not in TEMPLATE_SETS:
        raise ConfigError(f"Unknown template set '{template_set}'; valid: {', '.join(TEMPLATE_SETS)}.")
    overrides = TEMPLATE_SETS[template_set]
    if cfg.DATASET.NAME in overrides:
        return overrides[cfg.DATASET.NAME]
    return getattr(dataset, "template", "a photo of a {}.")
