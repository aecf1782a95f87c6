"""Learning rate per epoch against hand-computed values (Dassl's schedules)."""
import math

import pytest
import torch

from e2mim_engine.config import get_cfg_default
from e2mim_engine.errors import ConfigError
from e2mim_engine.optim import build_lr_scheduler, build_optimizer


def lrs(epochs, **kw):
    c = get_cfg_default().OPTIM
    c.NAME, c.LR = "sgd", 0.002
    for k, v in kw.items():
        setattr(c, k, v)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([p], c)
    sched = build_lr_scheduler(opt, c)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def cos(k, T, base=0.002):
    return 0.5 * base * (1 + math.cos(math.pi * k / T))


def test_cosine_with_constant_warmup_matches_dassl():
    # CoOp's schedule: epoch 0 at WARMUP_CONS_LR, then cosine restarted from the base LR.
    got = lrs(5, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    want = [1e-5, 0.002, cos(1, 5), cos(2, 5), cos(3, 5)]
    assert got == pytest.approx(want, rel=1e-12)


def test_cosine_without_warmup():
    got = lrs(4, LR_SCHEDULER="cosine", MAX_EPOCH=4)
    assert got == pytest.approx([cos(k, 4) for k in range(4)], rel=1e-12)


def test_linear_warmup():
    got = lrs(5, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    # epoch 0: min lr; epoch 1: base * 1/2; then the successor from its start
    assert got == pytest.approx([1e-5, 0.001, 0.002, cos(1, 5), cos(2, 5)], rel=1e-12)


def test_single_and_multi_step():
    got = lrs(5, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1, MAX_EPOCH=5)
    assert got == pytest.approx([0.002, 0.002, 0.0002, 0.0002, 0.00002], rel=1e-9)
    got = lrs(5, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5, MAX_EPOCH=5)
    assert got == pytest.approx([0.002, 0.001, 0.001, 0.0005, 0.0005], rel=1e-9)
    got = lrs(4, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1, WARMUP_EPOCH=1,
              WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    assert got == pytest.approx([1e-5, 0.002, 0.002, 0.0002], rel=1e-9)


def test_scheduler_state_round_trip_continues_identically():
    c = get_cfg_default().OPTIM
    c.NAME, c.LR, c.LR_SCHEDULER, c.MAX_EPOCH, c.WARMUP_EPOCH, c.WARMUP_TYPE = "sgd", 0.002, "cosine", 6, 1, "constant"
    p = torch.nn.Parameter(torch.zeros(2))
    o1 = build_optimizer([p], c)
    s1 = build_lr_scheduler(o1, c)
    for _ in range(3):
        o1.step()
        s1.step()
    o2 = build_optimizer([torch.nn.Parameter(torch.zeros(2))], c)
    s2 = build_lr_scheduler(o2, c)
    o2.load_state_dict(o1.state_dict())
    s2.load_state_dict(s1.state_dict())
    for _ in range(3):
        assert o2.param_groups[0]["lr"] == pytest.approx(o1.param_groups[0]["lr"], rel=1e-12)
        for o, s in ((o1, s1), (o2, s2)):
            o.step()
            s.step()


def test_bad_names():
    with pytest.raises(ConfigError, match="sgd, adam, adamw"):
        lrs(1, NAME="sgdd")
    with pytest.raises(ConfigError, match="single_step, multi_step, cosine"):
        lrs(1, LR_SCHEDULER="poly")
