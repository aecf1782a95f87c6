"""The published side: run a published checkout's own train.py under shims, with the hooks.

Started by the parity command as ``PY -m e2mim_tools.parity.ref_side ARGS...`` with the published
checkout's interpreter, the checkout as working directory and first on PYTHONPATH (so its
``trainers``, ``datasets`` and ``clip`` packages are the ones imported), and the run's settings
as JSON in $E2MIM_PARITY (common.side_env). Only the standard library, torch and hooks.py are
imported from this project.

Shims (what current torch or a CPU machine needs; none changes the math):
  - LRScheduler.__init__ accepts Dassl's removed ``verbose`` argument;
  - torch.load defaults to weights_only=False (the pre-2.6 default: Dassl's checkpoints pickle
    its scheduler, and the new-class evaluation loads them);
  - clip._download returns the fixture checkpoint (the checkout's own clip package, the other
    copies named in download_modules, e.g. TCP's trainers.clip_text.clip, and with clip_packages
    every copy of the package the checkout ships, e.g. DePT's clip_maple);
  - cuda_shim: Module.cuda()/Tensor.cuda() are no-ops (code that calls .cuda() unconditionally);
  - float_modules: submodules cast to fp32 after build_model (a learnable module the published
    code leaves in fp16 even at PREC fp32, which F.linear cannot mix with fp32 inputs);
  - nohalf_attrs: tensor attributes (and tensors computed from them) whose .half() is a no-op;
  - numpy_int: numpy's removed alias np.int (= int), which Dassl's RandAugment still uses;
  - adam_eps: torch.optim.Adam's default eps (TCP's README has users edit Dassl's optimizer to
    pass eps=1e-3; this makes the installed Dassl do what the edited one does).
Diagnosis switches (not parity settings; they neutralise a published precision quirk to show
it is the whole difference): no_half (Tensor.half() is a no-op everywhere), cuda_float
(modules moved with .cuda() are also cast to fp32).
"""
import importlib
import json
import os
import runpy
import sys

import torch
import torch.optim.lr_scheduler as lr_scheduler

from e2mim_tools.parity import hooks


class NoHalf(torch.Tensor):
    """A tensor (and everything computed from it) whose .half() is a no-op."""

    def half(self, *args, **kwargs):
        return self


def install_shims(spec):
    init = lr_scheduler.LRScheduler.__init__

    def scheduler_init(self, optimizer, last_epoch=-1, verbose=None):
        init(self, optimizer, last_epoch)

    lr_scheduler.LRScheduler.__init__ = scheduler_init
    load = torch.load

    def old_default_load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return load(*args, **kwargs)

    torch.load = old_default_load
    if spec.get("cuda_shim"):
        torch.nn.Module.cuda = (lambda self, *a, **k: self.float()) if spec.get("cuda_float") else (lambda self, *a, **k: self)
        torch.Tensor.cuda = lambda self, *a, **k: self
    if spec.get("no_half"):
        torch.Tensor.half = lambda self, *a, **k: self
    if spec.get("adam_eps"):
        adam_init = torch.optim.Adam.__init__

        def adam_with_eps(self, params, *args, **kwargs):
            kwargs.setdefault("eps", spec["adam_eps"])
            adam_init(self, params, *args, **kwargs)

        torch.optim.Adam.__init__ = adam_with_eps
    if spec.get("numpy_int"):
        import numpy as np
        if not hasattr(np, "int"):
            np.int = int
    modules = [f"{p}.clip" for p in spec.get("clip_packages", ["clip"])] + spec.get("download_modules", [])
    for name in modules:  # the checkout's copies of the clip package
        importlib.import_module(name)._download = lambda url, root=None, *a, **k: spec["ckpt"]


def precision_shims(spec):
    def apply(model):
        for name in spec.get("float_modules", []):
            model.get_submodule(name).float()  # in place: the optimizer keeps the same Parameters
            print(f"[parity] {name} cast to float32", flush=True)
        for name in spec.get("nohalf_attrs", []):
            owner, _, attr = name.rpartition(".")
            o = model.get_submodule(owner) if owner else model
            setattr(o, attr, getattr(o, attr).as_subclass(NoHalf))
            print(f"[parity] {name}: .half() is a no-op on it", flush=True)
    return apply


def main(argv):
    spec = json.loads(os.environ["E2MIM_PARITY"])
    install_shims(spec)
    from dassl.engine.trainer import SimpleTrainer
    from dassl.evaluation.evaluator import Classification
    from dassl.utils.meters import MetricMeter
    if spec.get("loss_log"):
        hooks.record_losses(MetricMeter, spec["loss_log"])
    if spec.get("eval_log"):
        hooks.record_logits(Classification, spec["eval_log"])
    hooks.exchange_init(SimpleTrainer, spec.get("init_dump"), spec.get("init_load"), before=precision_shims(spec))
    hooks.install_draws(spec)
    sys.argv = ["train.py"] + argv
    runpy.run_module("train", run_name="__main__", alter_sys=True)  # the checkout's, first on the path


if __name__ == "__main__":
    main(sys.argv[1:])
