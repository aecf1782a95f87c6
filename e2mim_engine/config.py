"""Dassl's config tree (the keys prompt-learning code and CoOp's yaml files use) and
merging with errors that name the bad key and the closest valid one.

Method keys are not here: each trainer declares its own node next to its code
(``TrainerBase.extend_cfg``) and ``e2mim_engine.cli.setup_cfg`` adds them all.
"""
import os

import yaml
from yacs.config import CfgNode as CN

from .errors import ConfigError, closest


def get_cfg_default():
    _C = CN()
    _C.VERSION = 1
    _C.OUTPUT_DIR = "./output"
    _C.RESUME = ""
    _C.SEED = -1
    _C.USE_CUDA = True
    _C.VERBOSE = True

    _C.INPUT = CN()
    _C.INPUT.SIZE = (224, 224)
    _C.INPUT.NO_TRANSFORM = False
    _C.INPUT.INTERPOLATION = "bilinear"
    _C.INPUT.TRANSFORMS = ()
    _C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    _C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    _C.INPUT.CROP_PADDING = 4
    _C.INPUT.RRCROP_SCALE = (0.08, 1.0)
    # Kept so Dassl/CoOp yaml files that mention them load; only some are used here.
    _C.INPUT.CUTOUT_N = 1
    _C.INPUT.CUTOUT_LEN = 16
    _C.INPUT.GN_MEAN = 0.0
    _C.INPUT.GN_STD = 0.15
    _C.INPUT.RANDAUGMENT_N = 2
    _C.INPUT.RANDAUGMENT_M = 10
    _C.INPUT.COLORJITTER_B = 0.4
    _C.INPUT.COLORJITTER_C = 0.4
    _C.INPUT.COLORJITTER_S = 0.4
    _C.INPUT.COLORJITTER_H = 0.1
    _C.INPUT.RGS_P = 0.2
    _C.INPUT.GB_P = 0.5
    _C.INPUT.GB_K = 21

    _C.DATASET = CN()
    _C.DATASET.ROOT = ""
    _C.DATASET.NAME = ""
    _C.DATASET.SOURCE_DOMAINS = ()
    _C.DATASET.TARGET_DOMAINS = ()
    _C.DATASET.NUM_LABELED = -1
    _C.DATASET.NUM_SHOTS = -1
    _C.DATASET.VAL_PERCENT = 0.1
    _C.DATASET.STL10_FOLD = -1
    _C.DATASET.CIFAR_C_TYPE = ""
    _C.DATASET.CIFAR_C_LEVEL = 1
    _C.DATASET.ALL_AS_UNLABELED = False
    # CoOp's train.py adds this one: "all", "base" or "new".
    _C.DATASET.SUBSAMPLE_CLASSES = "all"
    # Our addition: validation images per class of a few-shot run. 4 is CoOp's rule, min(NUM_SHOTS, 4);
    # any other value V keeps V per class (all of a class if fewer), even beyond NUM_SHOTS: more of
    # them make TEST.REPORT_VAL a finer instrument (the bench's choices use all 60 of CompWorldBench);
    # the training draw is the same either way.
    _C.DATASET.VAL_SHOTS = 4
    # Our addition: override the dataset's hand-crafted template (recorded in results.json).
    _C.DATASET.TEMPLATE = ""
    # Our addition: a custom dataset by config only (DATASET.NAME "ImageFolder"; DATASETS.md).
    _C.DATASET.CUSTOM = CN()
    # Folder of the dataset: under DATASET.ROOT, or an absolute path.
    _C.DATASET.CUSTOM.DIR = ""
    # "auto": "split" if DIR/train/ exists, else "single". "split": DIR/train/, DIR/val/, DIR/test/ of
    # class folders (val/ or test/ may be missing). "single": class folders in DIR/images/ (or DIR/),
    # split per class P_TRAIN / P_VAL / rest.
    _C.DATASET.CUSTOM.LAYOUT = "auto"
    # Optional class-name map: JSON {"folder": "class name"} or text lines "<folder> <class name>".
    _C.DATASET.CUSTOM.CLASSNAMES = ""
    # Split JSON read as is when it exists, written when a split is drawn; "" = DIR/split_custom.json.
    _C.DATASET.CUSTOM.SPLIT_FILE = ""
    _C.DATASET.CUSTOM.P_TRAIN = 0.5
    _C.DATASET.CUSTOM.P_VAL = 0.2
    # Class folders to skip.
    _C.DATASET.CUSTOM.IGNORED = ()

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 4
    # Augmented views per training image (Dassl): K > 1 makes batch["img"] a list of K batches, for a
    # method that reads several views (CoPrompt: 2); 1 for every other method (checked at start-up).
    _C.DATALOADER.K_TRANSFORMS = 1
    _C.DATALOADER.RETURN_IMG0 = False
    _C.DATALOADER.TRAIN_X = CN()
    _C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_X.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_X.N_INS = 16
    # Passes over the training set per epoch (fresh order and augmentation each pass): trains
    # as on a dataset REPEAT times larger with the same epochs and schedule (the CPU bench's
    # step-count rule). Not a Dassl key; 1 is Dassl's behaviour.
    _C.DATALOADER.TRAIN_X.REPEAT = 1
    _C.DATALOADER.TRAIN_U = CN()
    _C.DATALOADER.TRAIN_U.SAME_AS_X = True
    _C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_U.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_U.N_INS = 16
    _C.DATALOADER.TEST = CN()
    _C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    _C.DATALOADER.TEST.BATCH_SIZE = 32
    # Our addition: feature caches of methods whose image side is a frozen encoder
    # (e2mim_engine.data.feature_cache; `e2mim-cache info|clear`).
    _C.DATALOADER.FEATURE_CACHE = CN()
    # Test and validation image features computed once per backbone, precision and transform
    # and reused across epochs, seeds and methods (same numbers; off: False).
    _C.DATALOADER.FEATURE_CACHE.EVAL = True
    # K > 0: K augmented views per training image encoded once; each epoch trains on one view
    # per image (a protocol change: off by default, so runs draw a new augmentation per step).
    _C.DATALOADER.FEATURE_CACHE.TRAIN_VIEWS = 0
    # The cache folder; "" = $E2MIM_FEATURE_CACHE or ~/.cache/e2mim/features.
    _C.DATALOADER.FEATURE_CACHE.DIR = ""

    _C.MODEL = CN()
    _C.MODEL.INIT_WEIGHTS = ""
    _C.MODEL.BACKBONE = CN()
    # A CLIP name (ViT-B/16, RN50, ...), a path to a checkpoint file, or
    # "random:<name>" for a randomly initialised CLIP of that shape (tests, demo, benchmark).
    _C.MODEL.BACKBONE.NAME = ""
    _C.MODEL.BACKBONE.PRETRAINED = True
    # Where CLIP weight files are looked up by name; "" means $CLIP_CACHE_DIR or ~/.cache/clip.
    _C.MODEL.BACKBONE.CACHE_DIR = ""
    # Our addition: the text encoder shared by every prompt trainer (e2mim_clip.prompting).
    _C.MODEL.TEXT_ENCODER = CN()
    # True: gradient checkpointing of the text transformer's blocks (activations recomputed in
    # the backward pass). Same loss and gradients, text-side activation memory of about one
    # block instead of all of them, ~1.3x the text encoder's time: for many classes (ImageNet's
    # 1000) on small GPUs. Not part of a run's identity (a run may resume with either value).
    _C.MODEL.TEXT_ENCODER.CHECKPOINT = False
    _C.MODEL.HEAD = CN()
    _C.MODEL.HEAD.NAME = ""
    _C.MODEL.HEAD.HIDDEN_LAYERS = ()
    _C.MODEL.HEAD.ACTIVATION = "relu"
    _C.MODEL.HEAD.BN = True
    _C.MODEL.HEAD.DROPOUT = 0.0

    _C.OPTIM = CN()
    _C.OPTIM.NAME = "adam"
    _C.OPTIM.LR = 0.0003
    _C.OPTIM.WEIGHT_DECAY = 5e-4
    _C.OPTIM.MOMENTUM = 0.9
    _C.OPTIM.SGD_DAMPNING = 0
    _C.OPTIM.SGD_NESTEROV = False
    _C.OPTIM.RMSPROP_ALPHA = 0.99
    _C.OPTIM.ADAM_BETA1 = 0.9
    _C.OPTIM.ADAM_BETA2 = 0.999
    _C.OPTIM.STAGED_LR = False
    _C.OPTIM.NEW_LAYERS = ()
    _C.OPTIM.BASE_LR_MULT = 0.1
    _C.OPTIM.LR_SCHEDULER = "single_step"
    _C.OPTIM.STEPSIZE = (-1,)
    _C.OPTIM.GAMMA = 0.1
    _C.OPTIM.MAX_EPOCH = 10
    _C.OPTIM.WARMUP_EPOCH = -1
    _C.OPTIM.WARMUP_TYPE = "linear"
    _C.OPTIM.WARMUP_CONS_LR = 1e-5
    _C.OPTIM.WARMUP_MIN_LR = 1e-5
    _C.OPTIM.WARMUP_RECOUNT = True

    _C.TRAIN = CN()
    _C.TRAIN.CHECKPOINT_FREQ = 0
    _C.TRAIN.PRINT_FREQ = 10
    _C.TRAIN.COUNT_ITER = "train_x"

    _C.TEST = CN()
    _C.TEST.EVALUATOR = "Classification"
    _C.TEST.PER_CLASS_RESULT = False
    _C.TEST.COMPUTE_CMAT = False
    _C.TEST.NO_TEST = False
    _C.TEST.SPLIT = "test"
    _C.TEST.FINAL_MODEL = "last_step"
    # Also evaluate the final model on the validation split after training and write its
    # accuracy to results.json as val_accuracy (model selection without the test split).
    _C.TEST.REPORT_VAL = False

    _C.TRAINER = CN()
    _C.TRAINER.NAME = ""
    return _C


def all_keys(cfg, prefix=""):
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        if isinstance(v, CN):
            keys += all_keys(v, full + ".")
        else:
            keys.append(full)
    return keys


def _unknown_key(cfg, key, source):
    hint = closest(key, all_keys(cfg))
    hint = f" The closest valid key is {hint[0]}." if hint else ""
    return ConfigError(
        f"Unknown config key {key} in {source}.{hint} Check the spelling; keys of a method "
        f"exist only once its trainer module is imported (all modules in trainers/ are)."
    )


def _run_merge(cfg, merge, source):
    try:
        merge()
    except KeyError as e:
        msg = str(e.args[0]) if e.args else str(e)
        if "Non-existent config key" in msg:
            raise _unknown_key(cfg, msg.split(":", 1)[1].strip(), source) from None
        raise
    except ValueError as e:
        raise ConfigError(f"Bad value in {source}: {e}") from None
    except AssertionError as e:
        msg = str(e)
        if msg.startswith("Non-existent key:"):  # yacs' wording in merge_from_list
            raise _unknown_key(cfg, msg.split(":", 1)[1].strip(), source) from None
        raise ConfigError(f"Bad config in {source}: {e}") from None


def _coerce_ints(cfg, other, prefix=""):
    """Let an integer stand for a float key (``MI_WEIGHT 2``); yacs would reject the type."""
    for k, v in other.items():
        if k not in cfg:
            continue  # yacs reports unknown keys itself
        if isinstance(v, CN) and isinstance(cfg[k], CN):
            _coerce_ints(cfg[k], v, f"{prefix}{k}.")
        elif isinstance(cfg[k], float) and isinstance(v, int) and not isinstance(v, bool):
            other[k] = float(v)


def load_cfg_file(cfg, path, what="config file"):
    """The yaml file as a CfgNode (not merged yet)."""
    if not os.path.isfile(path):
        raise ConfigError(f"The {what} {path} does not exist. Pass a yaml file under configs/ "
                          f"(e.g. configs/datasets/caltech101.yaml).")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"Cannot read the {what} {path}: {e.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"The {what} {path} is not valid YAML{where}: {problem}. Fix the file (keys and "
                          f"values as in configs/trainers/CoOp/vit_b16_ep50.yaml).") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"The {what} {path} holds a {type(data).__name__}, not a mapping of config keys "
                          f"(e.g. \"OPTIM:\\n  LR: 0.002\"). Fix the file.")
    loaded = []
    _run_merge(cfg, lambda: loaded.append(cfg.load_cfg(text)), path)
    return loaded[0]


def merge_cfg(cfg, other, source):
    """Merge a loaded yaml file's CfgNode into cfg (errors name ``source``)."""
    def merge():
        _coerce_ints(cfg, other)
        cfg.merge_from_other_cfg(other)

    _run_merge(cfg, merge, source)


def merge_from_file(cfg, path, what="config file"):
    merge_cfg(cfg, load_cfg_file(cfg, path, what), path)


def _check_pairs(opts, source):
    flags = [str(o) for o in opts[::2] if str(o).startswith("--")]
    if flags:
        raise ConfigError(f"{flags[0]} appears among the trailing KEY VALUE pairs on {source}: flags come "
                          f"first, then the KEY VALUE pairs. Move {flags[0]} (and its value) before the "
                          f"first KEY.")
    if len(opts) % 2:
        raise ConfigError(f"Trailing options on {source} must come in KEY VALUE pairs; got "
                          f"{len(opts)} items: {' '.join(map(str, opts))}.")


def pairs_to_cfg(opts, source="the command line"):
    """KEY VALUE pairs as a nested CfgNode of the values as typed (strings), so a trainer's
    adapt_cfg_sources sees every source in one form; cfg_to_pairs turns it back."""
    _check_pairs(opts, source)
    node = CN()
    for i in range(0, len(opts), 2):
        *path, leaf = str(opts[i]).split(".")
        d = node
        for part in path:
            if not isinstance(d.get(part), CN):
                d[part] = CN()
            d = d[part]
        d[leaf] = opts[i + 1]
    return node


def cfg_to_pairs(node, prefix=""):
    out = []
    for k, v in node.items():
        if isinstance(v, CN):
            out += cfg_to_pairs(v, f"{prefix}{k}.")
        else:
            out += [f"{prefix}{k}", v]
    return out


def with_dataset_settings(sources, node, table, method):
    """Config sources with a method's published per-dataset settings inserted before the
    command line (the last source), so the method yaml is overridden and the command line is
    not: ``table`` {DATASET.NAME: {key: value}}, a key without a dot under TRAINER.<node>, a
    dotted key as it is (e.g. OPTIM.MAX_EPOCH). Nothing for other datasets, nor while
    TRAINER.<node>.DATASET_SETTINGS is False (the last source that sets it decides)."""
    def get(n, *path):
        for p in path:
            n = n.get(p) if hasattr(n, "get") else None
        return n
    dataset = on = None
    for _, n in sources:
        dataset = get(n, "DATASET", "NAME") or dataset
        flag = get(n, "TRAINER", node, "DATASET_SETTINGS")
        on = flag if flag is not None else on
    if str(on) in ("False", "false") or str(dataset) not in table:
        return sources
    settings = table[str(dataset)]
    pairs = [x for k, v in settings.items() for x in ((k if "." in k else f"TRAINER.{node}.{k}"), v)]
    label = f"{method}'s published settings for {dataset}"
    from .utils import logger
    logger.info(f"{label}: {dict(settings)} (command-line pairs override them)")
    return sources[:-1] + [(label, pairs_to_cfg(pairs, label)), sources[-1]]


def merge_from_list(cfg, opts, source="the command line"):
    _check_pairs(opts, source)
    opts = list(opts)
    for i in range(0, len(opts), 2):
        node, *path = cfg, *str(opts[i]).split(".")
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, CN) else None
        if isinstance(node, CN) and isinstance(node.get(path[-1]), float):
            value = CN._decode_cfg_value(opts[i + 1])
            if isinstance(value, int) and not isinstance(value, bool):
                opts[i + 1] = float(value)
    _run_merge(cfg, lambda: cfg.merge_from_list(opts), source)
