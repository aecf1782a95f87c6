"""What only a GPU can show, marked ``cuda`` (skipped where torch sees no GPU; run them with
``pytest -m cuda``, as scripts/gpu_check.sh does): every tensor of every trainer's step on the
GPU, amp's float16 autocast and its GradScaler skipping a step whose gradient is infinite,
fp16's float16 frozen CLIP under float32 prompts, the feature caches keyed by device, and
two sweep runs sharing one GPU (--per-gpu 2).

The CPU-op recorder the first test uses runs on CPU too (its last test), so its machinery is
exercised on every machine."""
import json
import os
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conftest import ROOT, demo_args, make_cfg
from e2mim_engine.trainer import TRAINER_REGISTRY, build_trainer
from e2mim_tools.benchmark import placeholder_dataset
from e2mim_tools.doctor import fixed_batch

CLASSES, BATCH = 4, 4
DATASET = placeholder_dataset("_CudaTestClasses", CLASSES)

# Steps that compute on the CPU by design, each with its reason. Anything else a step
# computes on the CPU is a hidden CPU tensor (a host computation and a copy every step).
CPU_BY_DESIGN = {
    # the Beta draws come from the trainer's CPU generator, so a run draws the same lambdas
    # on every device (resumes and CPU/GPU runs agree); [m] values, then moved
    "e2mim_engine/data/mixup_sampler.py:sample_lambda",
    # E2MIM's marginal-pair mask: which rows share a training item, built from the loader's
    # item indices (a CPU tensor: no device sync), B x B booleans, checked for an independent
    # pair there and moved to the critic's device once
    "trainers/e2mim.py:_dependent_pairs",
    "trainers/e2mim.py:_mi_term",
    "trainers/mi_estimators.py:forward",
}
# Tensors a trainer keeps on the CPU by design.
CPU_ATTRIBUTES = {
    "gpa_weights",  # PromptSRC's per-epoch aggregation weights, read as a Python float once an epoch
}


def _where():
    """file:function of the innermost frame of the project's code (not a test's)."""
    f = sys._getframe(2)
    while f is not None:
        path = os.path.relpath(f.f_code.co_filename, ROOT)
        if not path.startswith(("..", "tests", ".venv")) and "site-packages" not in path:
            return f"{path}:{f.f_code.co_name}"
        f = f.f_back
    return "?"


class CpuOps(TorchDispatchMode):
    """Records {location: {aten op}} of the ops that read or make a CPU tensor of more than
    one element, except copies of the batch the loader handed over (CPU, moved by the
    trainer's parse_batch_*)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = {t.untyped_storage().data_ptr() for t in batch.values() if torch.is_tensor(t)}
        self.found = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [t for t in tree_leaves((args, kwargs)) if torch.is_tensor(t) and t.device.type == "cpu" and t.numel() > 1]
        outs = [t for t in tree_leaves(out) if torch.is_tensor(t) and t.device.type == "cpu" and t.numel() > 1]
        if outs or any(t.untyped_storage().data_ptr() not in self.batch for t in ins):
            self.found.setdefault(_where(), set()).add(str(func))
        return out


def _cfg(trainer, prec="fp32", use_cuda=True, out="/tmp/e2mim-cuda-test", *extra):
    node = TRAINER_REGISTRY.get(trainer).node
    return make_cfg("--trainer", trainer, "--backbone", "random:tiny", "--output-dir", out, "--seed", 1,
                    "DATASET.NAME", DATASET, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", BATCH,
                    "USE_CUDA", use_cuda, f"TRAINER.{node}.PREC", prec, "OPTIM.NAME", "adam", "OPTIM.LR", 0.002,
                    "VERBOSE", False, *extra)


def _step(t, batch):
    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, 1
    t.before_epoch()
    return t.forward_backward(batch)


def _cpu_batch():
    return fixed_batch(CLASSES, BATCH, torch.device("cpu"))


TRAINERS = [n for n in TRAINER_REGISTRY.names()]


@pytest.mark.cuda
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("prec", ["fp32", "amp"])
def test_every_tensor_of_a_step_is_on_the_gpu(tmp_path, trainer, prec):
    t = build_trainer(_cfg(trainer, prec, True, str(tmp_path)))
    assert t.device.type == "cuda"
    models = dict(t._models)
    if isinstance(getattr(t, "model", None), torch.nn.Module):
        models["model"] = t.model
    off = [f"{name}.{n}" for name, m in models.items() for n, x in [*m.named_parameters(), *m.named_buffers()]
           if x.device.type != "cuda"]
    off += [k for k, v in vars(t).items()
            if torch.is_tensor(v) and v.dim() > 0 and v.device.type != "cuda" and k not in CPU_ATTRIBUTES]
    assert not off, f"{trainer} keeps these tensors on the CPU: {off[:10]}"
    batch = _cpu_batch()  # as the loader hands it over
    rec = CpuOps(batch)
    with rec:
        if t.get_model_names():
            _step(t, batch)
        t.set_model_mode("eval")
        with torch.no_grad():
            t.model_inference(batch["img"].cuda())
    hidden = {k: sorted(v) for k, v in rec.found.items() if k not in CPU_BY_DESIGN}
    assert not hidden, f"{trainer} ({prec}) computes on the CPU in a step: {hidden}"


@pytest.mark.cuda
def test_amp_on_cuda_computes_in_float16_with_a_grad_scaler(tmp_path):
    t = build_trainer(_cfg("CoOp", "amp", True, str(tmp_path)))
    assert t.precision.name == "amp" and isinstance(t.scaler, torch.amp.GradScaler)
    assert t.model.clip.visual.conv1.weight.dtype == torch.float32  # amp: float32 weights, cast per op

    class MatmulDtypes(TorchDispatchMode):
        seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
                self.seen.add(args[0].dtype if func.overloadpacket != torch.ops.aten.addmm else args[1].dtype)
            return func(*args, **(kwargs or {}))

    with MatmulDtypes():
        _step(t, {k: v.cuda() for k, v in _cpu_batch().items()})
    assert MatmulDtypes.seen == {torch.float16}, MatmulDtypes.seen
    assert t.model.prompt_learner.ctx.dtype == torch.float32


@pytest.mark.cuda
def test_amp_grad_scaler_skips_a_step_whose_gradient_is_infinite(tmp_path):
    t = build_trainer(_cfg("CoOp", "amp", True, str(tmp_path)))
    batch = {k: v.cuda() for k, v in _cpu_batch().items()}
    ctx = t.model.prompt_learner.ctx
    _step(t, batch)  # the first step initialises the scaler's state
    before, scale = ctx.detach().clone(), t.scaler.get_scale()
    hook = ctx.register_hook(lambda g: g * float("inf"))
    out = _step(t, batch)
    hook.remove()
    assert torch.isfinite(torch.tensor(out["loss"]))  # the loss was fine, its gradient was not
    assert torch.equal(ctx.detach(), before), "the step with an infinite gradient changed the prompt"
    assert t.scaler.get_scale() == scale / 2  # backoff factor 0.5
    _step(t, batch)
    assert not torch.equal(ctx.detach(), before) and torch.isfinite(ctx).all()


@pytest.mark.cuda
def test_fp16_keeps_the_frozen_clip_in_float16_and_the_prompt_in_float32(tmp_path):
    t = build_trainer(_cfg("CoOp", "fp16", True, str(tmp_path)))
    assert t.precision.name == "fp16" and t.scaler is None  # the GradScaler belongs to amp
    assert t.model.clip.visual.conv1.weight.dtype == torch.float16
    ctx = t.model.prompt_learner.ctx
    before = ctx.detach().clone()
    losses = [_step(t, {k: v.cuda() for k, v in _cpu_batch().items()})["loss"] for _ in range(3)]
    assert ctx.dtype == torch.float32 and ctx.grad.dtype == torch.float32
    assert not torch.equal(ctx.detach(), before) and losses[-1] < losses[0], losses


@pytest.mark.cuda
def test_feature_caches_are_keyed_by_device(tmp_path, demo_root, monkeypatch):
    monkeypatch.setenv("E2MIM_FEATURE_CACHE", str(tmp_path / "cache"))
    stats = {}
    for use_cuda in (False, True, True):
        out = str(tmp_path / f"out{len(stats)}")
        cfg = make_cfg(*demo_args(demo_root, out, "USE_CUDA", use_cuda, "TRAINER.COOP.PREC", "fp32"))
        t = build_trainer(cfg)
        assert t.device.type == ("cuda" if use_cuda else "cpu")
        t.test()
        stats[len(stats)] = (t.frozen_feature_identity()["device"], dict(t.feature_cache_stats))
    assert [s[0] for s in stats.values()] == ["cpu", "cuda", "cuda"]
    n = stats[0][1]["eval_encoded"]
    assert n > 0 and stats[1][1]["eval_encoded"] == n  # the GPU run encodes: the CPU's features are not its
    assert stats[2][1]["eval_encoded"] == 0 and stats[2][1]["eval_hits"] == n  # the second GPU run reads them
    assert len(os.listdir(tmp_path / "cache")) == 2


@pytest.mark.cuda
def test_two_sweep_runs_share_one_gpu(tmp_path, demo_root):
    import yaml

    from e2mim_tools.sweep import expand, load
    from e2mim_tools.sweep.cli import main
    from e2mim_tools.sweep.state import DONE, collect

    sweep = {"name": "pergpu", "data": demo_root, "output": str(tmp_path / "out"), "backbone": "random:tiny",
             "protocols": ["fewshot"], "datasets": ["demo"], "seeds": [1, 2], "fewshot_shots": [2],
             "opts": ["OPTIM.MAX_EPOCH", 2, "DATALOADER.NUM_WORKERS", 0, "VERBOSE", False],
             "methods": [{"method": "coop", "cfg": "demo_tiny", "opts": ["TRAINER.COOP.N_CTX", 4]}]}
    f = tmp_path / "pergpu.yaml"
    f.write_text(yaml.safe_dump(sweep))
    assert main(["run", str(f), "--gpus", "0", "--per-gpu", "2", "--no-report"]) == 0
    sw = load(str(f))
    runs = expand(sw)
    info = collect(sw, runs)
    assert len(runs) == 2 and all(info[r.key][0] == DONE for r in runs)
    spans = [(info[r.key][1]["start"], info[r.key][1]["start"] + info[r.key][1]["duration"]) for r in runs]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], f"the two runs did not overlap: {spans}"
    for r in runs:
        with open(os.path.join(r.directory, "results.json")) as fh:
            assert json.load(fh)["device"] == "cuda"


def test_cpu_op_recorder_names_the_code_and_spares_the_batch(tmp_path):
    """The recorder on CPU (where every op is a CPU op): it attributes ops to the project's
    functions, and the copy of the batch's labels is not among them."""
    t = build_trainer(_cfg("E2MIM", "fp32", False, str(tmp_path)))
    batch = _cpu_batch()
    rec = CpuOps(batch)
    with rec:
        _step(t, batch)
    assert "trainers/e2mim.py:forward_backward" in rec.found
    assert "trainers/e2mim.py:_dependent_pairs" in rec.found
    assert any(k.startswith("e2mim_clip/") for k in rec.found)
    for place in CPU_BY_DESIGN:  # the allowed places still exist under these names
        path, fn = place.split(":")
        with open(os.path.join(ROOT, path)) as fh:
            assert f"def {fn}(" in fh.read(), place
