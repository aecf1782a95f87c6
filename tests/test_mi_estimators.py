"""Tests for trainers/mi_estimators.py (CPU; a CUDA smoke test runs when available)."""

import contextlib
import functools
import math

import pytest
import torch

from e2mim_trainers.mi_estimators import (  # noqa: E402
    MI_ESTIMATORS,
    ConcatCritic,
    DVEstimator,
    build_mi_estimator,
)

NAMES = ["dv", "infonce", "jsd"]


def gaussian_pairs(n, d, rho, g):
    """(a, b) with b_k = rho * a_k + sqrt(1 - rho^2) * noise: I = -d/2 log(1 - rho^2)."""
    a = torch.randn(n, d, generator=g)
    b = rho * a + math.sqrt(1.0 - rho * rho) * torch.randn(n, d, generator=g)
    return a, b


def analytic_mi(d, rho):
    return -0.5 * d * math.log(1.0 - rho * rho)


@functools.lru_cache(maxsize=None)
def trained_estimate(name, rho, d=2, seed=0, steps=300, batch=64, eval_batch=512, **options):
    """Train a small critic with Adam on correlated Gaussians; estimate on a fresh batch."""
    with single_thread():
        return _train_and_estimate(name, rho, d, seed, steps, batch, eval_batch, options)


@contextlib.contextmanager
def single_thread():
    # Tiny matmuls: one thread is as fast and does not fight other jobs for cores.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train_and_estimate(name, rho, d, seed, steps, batch, eval_batch, options):
    torch.manual_seed(seed)
    est = build_mi_estimator(name, d, hidden=64, layers=1, **options)
    opt = torch.optim.Adam(est.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1000 + seed)
    for _ in range(steps):
        a, b = gaussian_pairs(batch, d, rho, g)
        loss = -est(a, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    est.eval()
    with torch.no_grad():
        a, b = gaussian_pairs(eval_batch, d, rho, g)
        return est(a, b).item()


# -- training behaviour ------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_trained_estimate_grows_with_correlation(name):
    values = [trained_estimate(name, rho) for rho in (0.0, 0.5, 0.9)]
    assert values[0] + 0.05 < values[1] < values[2] - 0.2, values


def test_jsd_value_range():
    # JSD bound lies in [-2 log 2, 0]; independent inputs sit at the bottom.
    v0, v9 = trained_estimate("jsd", 0.0), trained_estimate("jsd", 0.9)
    assert -2 * math.log(2) - 0.05 < v0 < -2 * math.log(2) + 0.05
    assert v9 < 0.0


@pytest.mark.parametrize("options", [{}, {"bias_correction": True}], ids=["plain", "mine_ma"])
def test_dv_close_to_and_below_analytic_mi(options):
    d, rho = 2, 0.8
    true = analytic_mi(d, rho)  # 1.022 nats
    est = trained_estimate("dv", rho, d=d, **options)
    assert est <= true + 0.1, (est, true)
    assert est >= 0.5 * true, (est, true)


def test_dv_and_infonce_near_zero_for_independent_inputs():
    for name in ("dv", "infonce"):
        assert abs(trained_estimate(name, 0.0)) < 0.1


def test_infonce_never_exceeds_log_batch():
    # Nearly deterministic relation and a small batch: the bound saturates at log B.
    batch = 8
    v = trained_estimate("infonce", 0.999, d=2, batch=batch, eval_batch=batch, steps=200)
    assert 0.5 * math.log(batch) < v <= math.log(batch) + 1e-6
    # Holds for any critic, even one with huge scores.
    torch.manual_seed(0)
    est = build_mi_estimator("infonce", 3, hidden=8)
    with torch.no_grad():
        for p in est.parameters():
            p.mul_(100.0)
    x = torch.randn(batch, 3)
    assert est(x, x).item() <= math.log(batch) + 1e-5


# -- exact formulas ----------------------------------------------------------

def manual_scores(critic, a, b):
    """T(a_i, b_j) by literally concatenating [a_i; b_j] and running the MLP."""
    w = torch.cat([critic.proj_a.weight, critic.proj_b.weight], dim=1)
    rows = []
    for i in range(a.shape[0]):
        cat = torch.cat([a[i].expand(b.shape[0], -1), b], dim=1)
        h = critic.act(cat @ w.T + critic.proj_a.bias)
        for layer in critic.hidden_layers:
            h = critic.act(layer(h))
        rows.append(critic.out(h).squeeze(-1))
    return torch.stack(rows)


@pytest.mark.parametrize("layers", [1, 2])
def test_critic_is_concat_mlp(layers):
    torch.manual_seed(0)
    critic = ConcatCritic(5, hidden=16, layers=layers, in_dim_b=3)
    a, b = torch.randn(4, 5), torch.randn(4, 3)
    s = critic.score_matrix(a, b)
    assert s.shape == (4, 4)
    torch.testing.assert_close(s, manual_scores(critic, a, b))
    torch.testing.assert_close(critic.pair_scores(a, b), s.diagonal())


def test_bounds_match_formulas():
    torch.manual_seed(0)
    n = 6
    a, b = torch.randn(n, 4), torch.randn(n, 4)
    off = ~torch.eye(n, dtype=torch.bool)
    for name in NAMES:
        torch.manual_seed(1)
        est = build_mi_estimator(name, 4, hidden=16)
        s = manual_scores(est.critic, a, b)
        joint, marg = s.diagonal(), s[off]
        if name == "jsd":
            expected = (-torch.nn.functional.softplus(-joint)).mean() - torch.nn.functional.softplus(marg).mean()
        elif name == "dv":
            expected = joint.mean() - torch.log(torch.exp(marg).mean())
        else:
            expected = (joint - torch.logsumexp(s, dim=1)).mean() + math.log(n)
        torch.testing.assert_close(est(a, b), expected)


def test_dv_is_stable_for_large_scores():
    torch.manual_seed(0)
    est = build_mi_estimator("dv", 2, hidden=8)
    with torch.no_grad():
        est.critic.out.weight.mul_(1e4)
        est.critic.out.bias.fill_(500.0)  # exp(500) overflows float32
    v = est(torch.randn(16, 2), torch.randn(16, 2))
    assert torch.isfinite(v)


def test_dv_bias_correction_changes_gradient_not_value():
    torch.manual_seed(0)
    plain = build_mi_estimator("dv", 3, hidden=16)
    corrected = build_mi_estimator("dv", 3, hidden=16, bias_correction=True, ma_rate=0.1)
    corrected.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(0)
    # Warm the moving average up on other batches so it differs from the current one.
    for _ in range(3):
        a, b = gaussian_pairs(32, 3, 0.5, g)
        corrected(a, b)
    assert int(corrected.ma_steps) == 3
    a, b = gaussian_pairs(32, 3, 0.5, g)
    v_plain, v_corr = plain(a, b), corrected(a, b)
    torch.testing.assert_close(v_plain, v_corr)
    v_plain.backward()
    v_corr.backward()
    gp, gc = plain.critic.out.bias.grad, corrected.critic.out.bias.grad
    assert not torch.allclose(gp, gc)
    # The moving average is saved for resumes and frozen in eval mode / no_grad.
    assert {"ma_log", "ma_steps"} <= set(corrected.state_dict())
    corrected.eval()
    corrected(a, b)
    corrected.train()
    with torch.no_grad():
        corrected(a, b)
    assert int(corrected.ma_steps) == 4


def test_shuffle_marginal_reproducible_with_generator():
    torch.manual_seed(0)
    a, b = torch.randn(10, 3), torch.randn(10, 3)
    for name in ("dv", "jsd"):
        est = build_mi_estimator(name, 3, hidden=8, marginal="shuffle")
        v1 = est(a, b, generator=torch.Generator().manual_seed(5))
        v2 = est(a, b, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(v1, v2)
        assert torch.isfinite(v1)
    with pytest.raises(ValueError, match="marginal"):
        build_mi_estimator("jsd", 3, marginal="foo")


def test_gradients_reach_inputs_and_critic():
    # In E2MIM the soft-prompt view must receive the estimator's gradient.
    for name in NAMES:
        est = build_mi_estimator(name, 5, hidden=8)
        a = torch.softmax(torch.randn(6, 5), dim=1)
        b = torch.softmax(torch.randn(6, 5), dim=1).requires_grad_()
        (-est(a, b)).backward()
        assert b.grad is not None and b.grad.abs().sum() > 0
        assert all(p.grad is not None for p in est.parameters())


# -- API, errors, dtypes ------------------------------------------------------

def test_registry_and_builder():
    assert sorted(MI_ESTIMATORS) == NAMES
    for name in NAMES:
        est = build_mi_estimator(name.upper(), 7, hidden=4, layers=2)
        assert est.name == name
        assert len(est.critic.hidden_layers) == 1
    assert isinstance(build_mi_estimator("dv", 3), DVEstimator)
    assert build_mi_estimator("jsd", 3).critic.hidden == 512


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        build_mi_estimator("foo", 10)
    assert str(info.value) == "unknown MI estimator 'foo'; valid: dv, infonce, jsd"


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one_is_a_clear_error(name):
    est = build_mi_estimator(name, 3, hidden=4)
    with pytest.raises(ValueError, match="at least 2"):
        est(torch.randn(1, 3), torch.randn(1, 3))


def test_shape_errors():
    est = build_mi_estimator("jsd", 3, hidden=4)
    with pytest.raises(ValueError, match="built for dims"):
        est(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="row-aligned"):
        est(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        est(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="hidden layer"):
        build_mi_estimator("jsd", 3, layers=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_computes_in_critic_dtype(dtype):
    torch.manual_seed(0)
    a, b = torch.randn(8, 3), torch.randn(8, 3)
    for name in NAMES:
        est = build_mi_estimator(name, 3, hidden=8)
        ref = est(a.to(dtype).float(), b.to(dtype).float())
        out = est(a.to(dtype), b.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert est(a, b).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_inputs():
    for name in NAMES:
        est = build_mi_estimator(name, 10, hidden=32).to("cuda")
        a = torch.softmax(torch.randn(16, 10, device="cuda"), 1).half()
        b = torch.softmax(torch.randn(16, 10, device="cuda"), 1).half().requires_grad_()
        with torch.autocast("cuda", dtype=torch.float16):
            v = est(a, b, generator=torch.Generator(device="cuda").manual_seed(0))
        assert v.dtype == torch.float32 and v.device.type == "cuda"
        v.backward()
        assert b.grad is not None
