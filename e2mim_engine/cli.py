"""CoOp's command line (train.py): argument parser, config assembly, run."""
import argparse
import os
import shutil
import sys
import threading

import torch

from .config import cfg_to_pairs, get_cfg_default, load_cfg_file, merge_cfg, merge_from_list, pairs_to_cfg
from .data import DATASET_REGISTRY
from .errors import ConfigError, UserError, user_message
from . import interrupt
from .interrupt import Interrupted
from .run import LOCK_FILE, MANIFEST, OutputLock, read_manifest
from .trainer import TRAINER_REGISTRY, build_trainer
from .seeding import set_random_seed
from .utils import logger, setup_logger


def build_parser():
    p = argparse.ArgumentParser(description="Prompt tuning for CLIP (CoOp-compatible command line)")
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1, help="a seed >= 0 fixes every random draw (the few-shot "
                   "draw included); the default -1 draws at random")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    trainers = ", ".join(sorted(name for name, _ in TRAINER_REGISTRY.items()))
    p.add_argument("--trainer", type=str, default="",
                   help=f"name of trainer ({trainers})" if trainers else "name of trainer")
    p.add_argument("--backbone", type=str, default="",
                   help="the CLIP (MODEL.BACKBONE.NAME): a CLIP name (RN50, ViT-B/16, ...; weights in "
                        "~/.cache/clip), a weight file, a locally built one (compworld-tiny) or random:<shape>")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--cross-eval", action="store_true",
                   help="with --eval-only: evaluate a checkpoint trained with another trainer or backbone on "
                        "purpose (the differences are recorded in results.json)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="modify config options using the command-line")
    return p


def default_cfg():
    """Dassl's defaults plus every registered trainer's own node."""
    cfg = get_cfg_default()
    for _, cls in TRAINER_REGISTRY.items():
        cls.extend_cfg(cfg)
    return cfg


def _trainer_name(args, sources):
    if args.trainer:
        return args.trainer
    for _, node in reversed(sources):  # the last source that names a trainer wins, as in the merge
        name = node.get("TRAINER", {}).get("NAME")
        if name:
            return str(name)
    return ""


def setup_cfg(args):
    """Merge order: defaults, dataset yaml, method yaml, CLI flags, trailing KEY VALUE pairs.

    The trainer named by the run may first rewrite the sources (``adapt_cfg_sources``: e.g.
    KgCoOp reads its published keys under TRAINER.COOP as TRAINER.KGCOOP)."""
    cfg = default_cfg()
    sources = []
    if args.dataset_config_file:
        sources.append((args.dataset_config_file, load_cfg_file(cfg, args.dataset_config_file, "dataset config file")))
    if args.config_file:
        sources.append((args.config_file, load_cfg_file(cfg, args.config_file, "config file")))
    pairs_label = "the command line"
    sources.append((pairs_label, pairs_to_cfg(list(args.opts or []), pairs_label)))
    name = _trainer_name(args, sources)
    if name in TRAINER_REGISTRY:
        sources = TRAINER_REGISTRY.get(name).adapt_cfg_sources(sources)
    for label, node in sources[:-1]:
        merge_cfg(cfg, node, label)
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    merge_from_list(cfg, cfg_to_pairs(sources[-1][1]), sources[-1][0])
    cfg.freeze()
    return cfg


# The generators' range: NumPy's seeds are 0 .. 2**32 - 1 (a negative SEED means unseeded).
MAX_SEED = 2**32 - 1


def preflight(args, cfg):
    """Errors in the arguments and paths, found before anything is logged or written: unknown
    names, the seed's range, the data root, --model-dir, --resume, and an evaluation into a
    training run's folder. Returns notes to show first (a generated dataset about to be made)."""
    TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    dataset = DATASET_REGISTRY.get(cfg.DATASET.NAME)
    seed = cfg.SEED
    if not isinstance(seed, int) or isinstance(seed, bool) or seed > MAX_SEED:
        raise ConfigError(f"SEED (--seed) must be an integer from 0 to {MAX_SEED} (the range of the random "
                          f"generators), or negative for an unseeded run; got {seed!r}.")
    for flag, path in (("--model-dir", args.model_dir), ("--resume", args.resume)):
        if path and not os.path.isdir(path):
            raise UserError(f"{flag} {path}: no such folder. Pass the OUTPUT_DIR of a training run.")
    if args.eval_only and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, MANIFEST)):
        raise UserError(f"--output-dir {cfg.OUTPUT_DIR} holds a training run (its checkpoints and results.json): an "
                        f"evaluation would replace that run's results.json. Evaluate into another --output-dir "
                        f"(the protocols use base2new/test_new/... for the new classes).")
    check_root = getattr(dataset, "check_root", None)
    note = check_root(cfg) if check_root else None
    return [note] if note else []


def run(args):
    cfg = setup_cfg(args)
    for note in preflight(args, cfg):
        print(f"note: {note}", file=sys.stderr)
    created = not os.path.exists(cfg.OUTPUT_DIR)
    try:
        with OutputLock(cfg.OUTPUT_DIR):  # one process writes a folder at a time
            return _run_locked(args, cfg)
    except UserError as e:
        # a run that stopped before writing anything but its log leaves no folder behind
        e.discard_folder = cfg.OUTPUT_DIR if created else None
        raise
    except Interrupted as e:
        e.run = (cfg.OUTPUT_DIR, bool(args.eval_only), cfg.OPTIM.MAX_EPOCH)
        raise
    except Exception:
        if interrupt.received() is None:
            raise
        # e.g. a DataLoader worker killed by the same SIGTERM: part of the interruption
        e = Interrupted(interrupt.received())
        e.run = (cfg.OUTPUT_DIR, bool(args.eval_only), cfg.OPTIM.MAX_EPOCH)
        raise e from None


def interrupted_message(e):
    """The one line for a run stopped by SIGTERM / SIGINT: what is saved and how to go on."""
    output_dir, eval_only, max_epoch = getattr(e, "run", ("", False, 0))
    if eval_only:
        return (f"interrupted by {e.name} during the evaluation: results.json was not written; run the same "
                f"command again to evaluate.")
    try:
        manifest = read_manifest(output_dir) if output_dir else None
    except UserError:
        manifest = None
    epoch = manifest["epoch"] if manifest else 0
    if not epoch:
        return (f"interrupted by {e.name} before the first epoch was saved: nothing to resume; run the same "
                f"command again to start over.")
    if epoch >= max_epoch:
        return (f"interrupted by {e.name} after training: the last saved epoch is {epoch} of {max_epoch} (in "
                f"{output_dir}); run the same command again to run its final test.")
    return (f"interrupted by {e.name}: the last saved epoch is {epoch} of {max_epoch} (in {output_dir}); run the "
            f"same command again to resume from it.")


def _log_line(line):
    for h in list(logger.handlers):
        if hasattr(h, "baseFilename"):
            h.stream.write(line + "\n")
            h.flush()


def discard_failed_start(folder):
    """Remove ``folder`` (made by this run) if it holds nothing but the log and the lock."""
    if not folder or not os.path.isdir(folder):
        return
    if all(f == LOCK_FILE or f == "log.txt" or f.startswith("log.txt-") for f in os.listdir(folder)):
        shutil.rmtree(folder, ignore_errors=True)


def _run_locked(args, cfg):
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        logger.info(f"Setting fixed seed: {cfg.SEED}")
    logger.info("***************\n** Arguments **\n***************")
    for k, v in sorted(vars(args).items()):
        logger.info(f"{k}: {v}")
    logger.info("************\n** Config **\n************")
    logger.info(str(cfg))
    logger.info(f"PyTorch {torch.__version__}; CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    trainer = build_trainer(cfg)
    if args.eval_only:
        if not args.model_dir and trainer.get_model_names():
            raise ConfigError(f"--eval-only with {cfg.TRAINER.NAME} needs --model-dir (the OUTPUT_DIR of the "
                              f"training run, with --load-epoch N or its best model): without it the "
                              f"untrained {', '.join(trainer.get_model_names())} would be evaluated.")
        trainer.cross_eval = args.cross_eval
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return trainer
    if not args.no_train:
        trainer.train()
    return trainer


_TEARDOWN_MODULES = ("torch.utils.data", "multiprocessing")


def _from_loader_teardown(obj=None, tb=None):
    """Whether an error comes from the data loaders' worker machinery (DataLoader iterators,
    multiprocessing's resource sharer), by the object's module or the traceback's files."""
    if any(m in (getattr(obj, "__module__", None) or "") for m in _TEARDOWN_MODULES):
        return True
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace(os.sep, ".")
        if any(m in name for m in _TEARDOWN_MODULES):
            return True
        tb = tb.tb_next
    return False


def _quiet_loader_teardown():
    """After an interrupt, the loaders' workers die with the signal, and what the main process
    still holds of them fails as it is collected: an iterator the signal caught half-built in
    its __del__, the resource sharer's thread on a broken pipe. That is the interruption, not
    news; the one-line message stays the only output. Other errors are reported as usual."""
    unraisable, thread = sys.unraisablehook, threading.excepthook

    def quiet_unraisable(u):
        if not _from_loader_teardown(u.object, u.exc_traceback):
            unraisable(u)

    def quiet_thread(a):
        if not _from_loader_teardown(None, a.exc_traceback):
            thread(a)
    sys.unraisablehook, threading.excepthook = quiet_unraisable, quiet_thread


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with interrupt.handling():
            run(args)
    except Interrupted as e:
        # One line on stderr and in log.txt; exit status 128 + signal (143 SIGTERM, 130 SIGINT).
        _quiet_loader_teardown()
        line = interrupted_message(e)
        print(line, file=sys.stderr)
        _log_line(line)
        return e.exit_code
    except UserError as e:
        # One paragraph on stderr (and in log.txt if one was opened), no traceback.
        msg = user_message(e)
        print(f"error: {msg}", file=sys.stderr)
        _log_line(f"error: {msg}")
        if getattr(e, "discard_folder", None):
            for h in list(logger.handlers):
                if hasattr(h, "baseFilename"):
                    logger.removeHandler(h)
                    h.close()
        discard_failed_start(getattr(e, "discard_folder", None))
        return 2
    return 0
