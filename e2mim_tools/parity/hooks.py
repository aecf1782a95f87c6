"""Recording hooks installed in both training processes (the published code's and ours).

Plain functions over the classes each engine uses, so one implementation serves Dassl and
our engine; only the standard library and torch are imported (this module also runs inside
the published code's interpreter):

- record_losses(MeterClass, path): every ``MetricMeter.update`` appends its loss dict, at full
  precision (the logs print 4 decimals), as one JSON line to ``path``;
- record_logits(EvaluatorClass, path): the logits and labels of the last test() go to ``path``;
- exchange_init(TrainerClass, dump, load, rename): after the trainer's ``__init__`` (the model
  and optimizer built), the learnable tensors it drew are written to ``dump`` (name -> fp32 tensor), then
  tensors read from ``load`` are copied in place (same name and shape; others are reported),
  with ``rename`` (a function of the loaded name) mapping the published names to ours;
- install_draws(settings): fixed_randint(module, values) and reseed_per_call(class path), the
  same random per-step choices on both sides (common.Case.draws).
"""
import importlib
import json
import random
import types

import torch


def record_losses(meter_cls, path):
    update = meter_cls.update

    def logged_update(self, values, *args, **kwargs):
        with open(path, "a") as f:
            f.write(json.dumps({k: float(v.item() if hasattr(v, "item") else v) for k, v in values.items()}) + "\n")
        return update(self, values, *args, **kwargs)

    meter_cls.update = logged_update


def record_logits(evaluator_cls, path):
    reset, process = evaluator_cls.reset, evaluator_cls.process

    def logged_reset(self, *args, **kwargs):
        self._parity_log = []
        return reset(self, *args, **kwargs)

    def logged_process(self, output, gt, *args, **kwargs):
        log = self.__dict__.setdefault("_parity_log", [])
        log.append((output.detach().float().cpu(), gt.detach().cpu()))
        torch.save({"logits": torch.cat([x for x, _ in log]), "labels": torch.cat([y for _, y in log])}, path)
        return process(self, output, gt, *args, **kwargs)

    evaluator_cls.reset, evaluator_cls.process = logged_reset, logged_process


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def load_into(model, tensors):
    """Copy ``tensors`` into the model's parameters of the same name and shape, in place (the
    optimizer keeps its Parameter objects); returns (loaded names, skipped names)."""
    own = dict(model.named_parameters())
    loaded, skipped = [], []
    with torch.no_grad():
        for k, v in tensors.items():
            if k in own and own[k].shape == v.shape:
                own[k].copy_(v.to(own[k].dtype))
                loaded.append(k)
            else:
                skipped.append(f"{k} {tuple(v.shape)}")
    return loaded, skipped


def exchange_init(trainer_cls, dump=None, load=None, rename=None, before=None):
    """``before(model)``, if given, runs first (the published side's precision shims)."""
    init = trainer_cls.__init__

    def init_then_exchange(self, cfg, *args, **kwargs):
        init(self, cfg, *args, **kwargs)
        model = unwrap(self.model)
        if before:
            before(model)
        if dump:  # the tensors this code drew itself, before any are loaded
            torch.save({k: p.detach().clone().float() for k, p in model.named_parameters() if p.requires_grad}, dump)
        if load:
            src = torch.load(load)
            if rename:
                src = rename(src)
            loaded, skipped = load_into(model, src)
            for s in skipped:
                print(f"[parity] init tensor not loaded: {s}", flush=True)
            print(f"[parity] loaded {len(loaded)} initial learnable tensors from {load}", flush=True)

    trainer_cls.__init__ = init_then_exchange


class FedRandom(types.SimpleNamespace):
    """Stands for the ``random`` module inside one module: randint(a, b) maps the next fed
    uniform value u in [0, 1) to a + floor(u * (b - a + 1)); everything else is ``random``'s."""

    def __init__(self, values):
        super().__init__(**{k: getattr(random, k) for k in dir(random) if not k.startswith("_") and k != "randint"})
        self._values, self._next = list(values), 0

    def randint(self, a, b):
        u = self._values[self._next]
        self._next += 1
        return a + int(u * (b - a + 1))


def fixed_randint(module_name, values):
    """The module's random.randint returns the fed draws, in order (the module is imported here,
    so its later importers get the same module object)."""
    module = importlib.import_module(module_name)
    module.random = FedRandom(values)


def reseed_per_call(class_path):
    """Each call of the class's instances first seeds Python's and numpy's global generators
    with the call's number (0, 1, ...), so the c-th call draws the same in both codes whatever
    was drawn before it."""
    import numpy as np

    module_name, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    call, count = cls.__call__, [0]

    def seeded_call(self, *args, **kwargs):
        random.seed(count[0])
        np.random.seed(count[0])
        count[0] += 1
        return call(self, *args, **kwargs)

    cls.__call__ = seeded_call


def install_draws(spec):
    """The case's fed random choices (common.Case.draws, in a side's settings), on either side."""
    if spec.get("randint"):
        fixed_randint(spec["randint"]["module"], spec["randint"]["values"])
    if spec.get("reseed"):
        reseed_per_call(spec["reseed"])
