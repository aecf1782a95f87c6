"""Precision as a real choice (e2mim_engine.device): what bf16 stores in which dtype, the
note when bf16 is measured slower than fp32 on the CPU, and bf16 CoOp training reaching fp32's accuracy on generated data;
plus MODEL.TEXT_ENCODER.CHECKPOINT reaching every text encoder with an unchanged step."""
import logging

import pytest
import torch
import torch.nn as nn

from conftest import make_cfg
from e2mim_engine import device as device_mod
from e2mim_tools.benchmark import placeholder_dataset
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer

C, PER_CLASS = 4, 4


placeholder_dataset("_PerfSynthClasses", C)  # items never read: batches are made in memory


def trainer(tmp_path, prec, *extra, name="CoOp", node="COOP"):
    cfg = make_cfg("--trainer", name, "--backbone", "random:tiny", "--output-dir", tmp_path / f"{name}-{prec}",
                   "--seed", 1, "DATASET.NAME", "_PerfSynthClasses", "DATALOADER.NUM_WORKERS", 0,
                   "USE_CUDA", False, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.02, "VERBOSE", False,
                   f"TRAINER.{node}.PREC", prec, f"TRAINER.{node}.N_CTX", 4, *extra)
    set_random_seed(1)
    t = build_trainer(cfg)
    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, 10**6
    return t


def separable_data(seed):
    """PER_CLASS images per class: a class prototype plus noise (generated, deterministic)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(C, 3, 224, 224, generator=g)
    labels = torch.arange(C).repeat_interleave(PER_CLASS)
    images = protos[labels] + 0.5 * torch.randn(len(labels), 3, 224, 224, generator=g)
    return images, labels


def test_bf16_stores_frozen_weights_in_bf16_and_learns_in_fp32(tmp_path):
    t = trainer(tmp_path, "bf16")
    clip_model, pl = t.model.clip, t.model.prompt_learner
    for m in clip_model.modules():
        for p in m.parameters(recurse=False):
            assert p.dtype == (torch.float32 if isinstance(m, nn.LayerNorm) else torch.bfloat16)
    assert pl.ctx.dtype == torch.float32 and t.scaler is None
    images, labels = separable_data(0)
    t.forward_backward({"img": images[:8], "label": labels[:8]})
    assert pl.ctx.grad.dtype == torch.float32
    state = t._optims["prompt_learner"].state[pl.ctx]
    assert state["momentum_buffer"].dtype == torch.float32


def test_slower_bf16_is_a_note_faster_is_said_too(monkeypatch):
    """Whether bfloat16 pays off on a CPU is measured (cpu_bf16_speedup), not guessed from
    its flags: slower than fp32 -> one-line note naming the key; faster -> the speed-up."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("e2mim")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        for speedup in (0.6, 4.0):
            monkeypatch.setattr(device_mod, "cpu_bf16_speedup", lambda: speedup)
            for name in ("bf16", "amp", "fp32"):
                records.clear()
                p = device_mod.resolve_precision(name, torch.device("cpu"), "TRAINER.COOP.PREC")
                assert p.name == name
                msgs = [r.getMessage() for r in records if "bfloat16" in r.getMessage()]
                if name == "fp32":
                    assert not msgs
                elif speedup < 1:
                    assert len(msgs) == 1 and "slower than fp32" in msgs[0] and "\n" not in msgs[0]
                    assert f"TRAINER.COOP.PREC={name}" in msgs[0] and "0.60x" in msgs[0]
                else:
                    assert len(msgs) == 1 and "4.0x the fp32 speed" in msgs[0] and "slower" not in msgs[0]
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_cpu_bf16_speedup_is_measured_once():
    device_mod._CPU_BF16_SPEEDUP.clear()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    first = device_mod.cpu_bf16_speedup(size=64, reps=2)
    assert torch.equal(torch.rand(3), expected)  # the probe leaves the global random stream alone
    assert first > 0 and device_mod.cpu_bf16_speedup(size=64, reps=2) == first  # cached per process


def _train(tmp_path, prec, seed, steps):
    """Full-batch CoOp steps (class-specific context, Adam: a random CLIP's features differ
    little, and shared context with SGD barely moves them); training accuracy and losses."""
    images, labels = separable_data(seed)
    t = trainer(tmp_path / str(seed), prec, "TRAINER.COOP.CSC", True, "OPTIM.NAME", "adam", "OPTIM.LR", 0.01)
    losses = [t.forward_backward({"img": images, "label": labels})["loss"] for _ in range(steps)]
    t.set_model_mode("eval")
    with torch.no_grad():
        acc = (t.model_inference(images).argmax(1) == labels).float().mean().item() * 100
    return acc, losses


def test_bf16_training_reaches_fp32_accuracy(tmp_path):
    """CoOp on a random tiny CLIP and separable generated data, 3 data/init seeds, 25 steps:
    bf16's mean training accuracy is within 10 points of fp32's (16 images per seed, so one
    image is 6.25 points), both learn (mean >= 70%, chance 25%), and bf16's loss curve stays
    within 0.1 of fp32's at every step of every seed, ending within 0.03."""
    steps, accs, gaps, ends = 25, {}, [], []
    for seed in (1, 2, 3):
        a32, l32 = _train(tmp_path / "fp32", "fp32", seed, steps)
        a16, l16 = _train(tmp_path / "bf16", "bf16", seed, steps)
        accs[seed] = (a32, a16)
        gaps.append(max(abs(x - y) for x, y in zip(l32, l16)))
        ends.append(abs(l32[-1] - l16[-1]))
        assert l32[-1] < l32[0] - 0.2 and l16[-1] < l16[0] - 0.2, (l32, l16)
    mean32 = sum(a for a, _ in accs.values()) / 3
    mean16 = sum(a for _, a in accs.values()) / 3
    assert mean32 >= 70 and mean16 >= 70, accs
    assert abs(mean32 - mean16) <= 10, accs
    assert max(gaps) <= 0.1 and max(ends) <= 0.03, (gaps, ends)


@pytest.mark.parametrize("name,node", [("CoOp", "COOP"), ("E2MIM", "E2MIM")])
def test_text_encoder_checkpoint_key_reaches_the_encoder_and_keeps_the_step(tmp_path, name, node):
    images, labels = separable_data(0)
    batch = {"img": images[:8], "label": labels[:8]}
    runs = {}
    for on in (False, True):
        t = trainer(tmp_path / str(on), "fp32", "MODEL.TEXT_ENCODER.CHECKPOINT", on, name=name, node=node)
        assert t.model.text_encoder.checkpoint is on
        set_random_seed(1)
        out = t.forward_backward(batch)
        runs[on] = (out["loss"], [p.detach().clone() for p in t.model.prompt_learner.parameters()])
    (l0, p0), (l1, p1) = runs[False], runs[True]
    assert l0 == pytest.approx(l1, rel=1e-5, abs=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(p0, p1))
