"""E2MIM as a trainer of an existing Dassl project (CoOp, MaPLe, PromptSRC or KgCoOp checkout).

Two lines in the project's train.py::

    import e2mim_dassl                 # next to `import trainers.coop`
    ...
    def extend_cfg(cfg):
        ...
        e2mim_dassl.extend_cfg(cfg)    # at the end of its extend_cfg

then ``python train.py --trainer E2MIM --config-file configs/trainers/E2MIM/vit_b16_base2new.yaml
...`` trains and evaluates through the checkout's own Dassl (README.md, "E2MIM in your CoOp/MaPLe
fork"). Importing this package imports nothing from Dassl (nor torch or CLIP): ``extend_cfg`` does,
when the Dassl project calls it, so the toolbox installs and runs without Dassl.
"""

__all__ = ["dassl_shims", "extend_cfg"]


def extend_cfg(cfg):
    """Register the E2MIM trainer in the running Dassl's TRAINER_REGISTRY and add its config
    node TRAINER.E2MIM (the toolbox's defaults) and DATASET.TEMPLATE to ``cfg``."""
    try:
        import dassl  # noqa: F401
    except ImportError:
        raise ImportError("e2mim_dassl.extend_cfg(cfg) is for the train.py of a Dassl project (CoOp, MaPLe, "
                          "PromptSRC, KgCoOp), but `dassl` is not importable in this interpreter: install the "
                          "project's Dassl.pytorch (pip install -e Dassl.pytorch) or run the project's train.py. "
                          "The toolbox's own train.py needs neither.") from None
    from .trainer import E2MIM, route_log_to_stdout  # imports dassl, torch and the checkout's clip

    route_log_to_stdout()
    E2MIM.extend_cfg(cfg)
    if "TEMPLATE" not in cfg.DATASET:
        # The toolbox's key: a hand-crafted template that overrides the dataset's ("" = the dataset's).
        cfg.DATASET.TEMPLATE = ""
    return cfg


def dassl_shims():
    """Make the published Dassl (2022) run on current PyTorch, as any of its trainers needs:
    LRScheduler.__init__ accepts the ``verbose`` argument Dassl's warm-up scheduler passes (gone
    from torch's schedulers), and torch.load defaults to ``weights_only=False`` again (torch >= 2.6
    defaults to True, and Dassl's checkpoints pickle its warm-up scheduler, so its load_model and
    resume fail). Call it first in the Dassl project's train.py; it changes torch process-wide,
    so only the files the run writes itself should be loaded."""
    import inspect

    import torch
    from torch.optim import lr_scheduler

    init = lr_scheduler.LRScheduler.__init__
    if "verbose" not in inspect.signature(init).parameters:
        def accept_verbose(self, optimizer, last_epoch=-1, verbose=None):
            init(self, optimizer, last_epoch)
        lr_scheduler.LRScheduler.__init__ = accept_verbose
    if not getattr(torch.load, "e2mim_pickles", False):
        load = torch.load

        def load_pickles(*args, **kwargs):
            kwargs.setdefault("weights_only", False)
            return load(*args, **kwargs)
        load_pickles.e2mim_pickles = True
        torch.load = load_pickles
