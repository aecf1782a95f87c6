"""Learnable mutual-information (MI) estimators for E2MIM.

E2MIM ties two views of a prediction together (hand-crafted prompt p^h and soft
prompt p^s) by maximising a variational lower bound on I(A; B) estimated with a
small learnable critic T_phi(a, b).  Critic and prompts maximise the *same*
bound with one backward pass: the E2MIM trainer subtracts ``estimator(a, b)``
from its loss with unit weight, so the critic ascends the bound at its own
learning rate, and scales only the gradient that flows back into the soft
prompt's input ``b`` by beta (``TRAINER.E2MIM.MI_WEIGHT``).  beta therefore sets
how strongly the prompt is pulled, never how fast the critic learns.

Public API
----------
``build_mi_estimator(name, in_dim, hidden=512, layers=1, **options)``
    Returns an ``MIEstimator`` (an ``nn.Module``).  ``name`` is one of
    ``MI_ESTIMATORS`` ("dv", "infonce", "jsd"; case-insensitive).
``estimator(a, b, generator=None) -> scalar tensor``
    ``a`` and ``b`` are ``[B, in_dim]`` (``b`` may be ``[B, in_dim_b]``); row i
    of ``a`` and row i of ``b`` come from the same sample (a joint pair).  The
    returned value is a lower-bound estimate: higher means more dependence.

Bounds (all in natural-log units where they are MI bounds at all)
----------------------------------------------------------------
* "jsd" (default; f-GAN / Deep InfoMax):
  ``E_joint[-softplus(-T)] - E_marg[softplus(T)]``.  At the optimal critic it
  equals ``2*JSD(P_AB || P_A P_B) - 2*log 2``, so it lies in ``[-2 log 2, 0]``
  and is NOT an MI value in nats; it is monotone in the dependence and gives
  well-behaved (bounded, low-variance) gradients, which is why it is the
  default for training.
* "dv" (Donsker-Varadhan / MINE): ``E_joint[T] - log E_marg[exp T]``, the log
  of the mean computed with ``logsumexp`` so that large scores cannot
  overflow.  A true lower bound on I(A;B) in nats (up to the finite-batch bias
  of the log-mean-exp).  ``bias_correction=True`` enables MINE's
  moving-average correction of the *gradient* (the returned value is unchanged).
* "infonce": uses the full B x B score matrix S[i, j] = T(a_i, b_j) and returns
  ``mean_i(S[i,i] - logsumexp_j S[i,j]) + log B``; a lower bound in nats that
  can never exceed ``log B``.

Marginal pairs ("dv" and "jsd")
-------------------------------
``marginal="all"`` (default) scores every pair (a_i, b_j) by broadcasting the
critic over the B x B grid and uses all B*(B-1) off-diagonal pairs as samples
of the product of marginals: no randomness, lowest variance.  Memory is
``B*B*hidden`` floats per hidden layer (B=64, hidden=512: 8 MiB), fine up to
B of a few hundred.  ``marginal="shuffle"`` instead pairs a with b shuffled by
a random derangement of the batch (drawn from ``generator`` when given, else
from torch's global RNG): 2*B critic evaluations, for very large batches.

A batch of one sample has no marginal pair and raises ``ValueError``.

Precision and devices: inputs are cast to the critic's dtype/device and autocast
is disabled inside ``forward``, so a float32 critic computes in float32 even
when fed fp16/bf16 probabilities from an autocast region.  No ``.cuda()``
calls; move the module with ``.to(device)`` like any other.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_HIDDEN",
    "DEFAULT_LAYERS",
    "DEFAULT_MARGINAL",
    "MARGINAL_MODES",
    "MI_ESTIMATORS",
    "ConcatCritic",
    "MIEstimator",
    "JSDEstimator",
    "DVEstimator",
    "InfoNCEEstimator",
    "build_mi_estimator",
    "estimator_options",
]

# Defaults: one hidden layer of width 512.  The inputs are class-probability
# vectors (C up to 1000 for ImageNet), so a width in the hundreds keeps the
# first layer expressive without making the B x B grid expensive.
DEFAULT_HIDDEN = 512
DEFAULT_LAYERS = 1
DEFAULT_ESTIMATOR = "jsd"   # bounded, low-variance gradients (module docstring)
MARGINAL_MODES = ("all", "shuffle")
DEFAULT_MARGINAL = "all"

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


class ConcatCritic(nn.Module):
    """MLP critic ``T(a, b) = MLP([a; b])`` returning one score per pair.

    The first layer on the concatenation ``[a; b]`` is stored as two linear
    maps (``W [a; b] = W_a a + W_b b``): mathematically the same layer, but it
    lets ``score_matrix`` project each row once and broadcast the sum over the
    B x B grid instead of materialising B*B concatenated inputs.

    Args:
        in_dim: dimension of ``a`` (e.g. the number of classes C).
        hidden: width of every hidden layer.
        layers: number of hidden layers (>= 1; a critic without a hidden layer
            is ``f(a) + g(b)``, which cannot see any dependence).
        in_dim_b: dimension of ``b`` (defaults to ``in_dim``).
        activation: "relu" (default), "elu", "gelu" or "softplus".
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = DEFAULT_HIDDEN,
        layers: int = DEFAULT_LAYERS,
        in_dim_b: Optional[int] = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        in_dim_b = in_dim if in_dim_b is None else in_dim_b
        for key, value in (("in_dim", in_dim), ("in_dim_b", in_dim_b), ("hidden", hidden)):
            if int(value) != value or value < 1:
                raise ValueError(f"MI critic {key} must be a positive integer; got {value!r}")
        if int(layers) != layers or layers < 1:
            raise ValueError(
                f"MI critic needs at least one hidden layer (layers >= 1); got layers={layers!r}"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown MI critic activation {activation!r}; valid: {', '.join(sorted(_ACTIVATIONS))}"
            )
        self.in_dim, self.in_dim_b = int(in_dim), int(in_dim_b)
        self.hidden, self.layers = int(hidden), int(layers)
        self.proj_a = nn.Linear(self.in_dim, self.hidden)
        self.proj_b = nn.Linear(self.in_dim_b, self.hidden, bias=False)  # bias lives in proj_a
        self.act = _ACTIVATIONS[activation]()
        self.hidden_layers = nn.ModuleList(
            nn.Linear(self.hidden, self.hidden) for _ in range(self.layers - 1)
        )
        self.out = nn.Linear(self.hidden, 1)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        h = self.act(h)
        for layer in self.hidden_layers:
            h = self.act(layer(h))
        return self.out(h).squeeze(-1)

    def pair_scores(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores of row-aligned pairs: ``[B] = T(a_i, b_i)``."""
        return self._head(self.proj_a(a) + self.proj_b(b))

    def score_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All pairs: ``[B_a, B_b]`` with entry ``[i, j] = T(a_i, b_j)``."""
        return self._head(self.proj_a(a)[:, None, :] + self.proj_b(b)[None, :, :])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.pair_scores(a, b)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, in_dim_b={self.in_dim_b}, hidden={self.hidden}, layers={self.layers}"


class MIEstimator(nn.Module):
    """Base class: a critic plus a lower bound on I(A; B).

    Subclasses implement ``_bound(a, b, generator)`` on already validated,
    cast inputs.  ``forward`` returns a 0-dim tensor (higher = more MI).
    """

    name = "base"
    options: Tuple[str, ...] = ()  # the estimator's own options (besides the critic's)

    def __init__(self, in_dim: int, **critic_options) -> None:
        """``critic_options``: ConcatCritic's hidden, layers, in_dim_b, activation."""
        super().__init__()
        self.critic = ConcatCritic(in_dim, **critic_options)

    # -- helpers -----------------------------------------------------------
    def _prepare(self, a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        c = self.critic
        if a.dim() != 2 or b.dim() != 2:
            raise ValueError(
                f"MI estimator '{self.name}' expects a and b of shape [batch, dim]; "
                f"got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if a.shape[1] != c.in_dim or b.shape[1] != c.in_dim_b:
            raise ValueError(
                f"MI estimator '{self.name}' was built for dims ({c.in_dim}, {c.in_dim_b}); "
                f"got a of dim {a.shape[1]} and b of dim {b.shape[1]}"
            )
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"MI estimator '{self.name}' needs row-aligned pairs; got {a.shape[0]} rows in a "
                f"and {b.shape[0]} rows in b"
            )
        if a.shape[0] < 2:
            raise ValueError(
                f"MI estimator '{self.name}' needs a batch of at least 2 samples to form marginal "
                f"pairs (a_i with b_j, i != j); got batch size {a.shape[0]}"
            )
        # Compute in the critic's precision (fp32 unless the caller changed it).
        w = c.proj_a.weight
        return a.to(device=w.device, dtype=w.dtype), b.to(device=w.device, dtype=w.dtype)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, generator: Optional[torch.Generator] = None,
        exclude: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``exclude``: optional bool [B, B], True where (a_i, b_j), i != j, is NOT a sample of
        the product of marginals (the two rows share a source image, e.g. a clean image and
        a mixture made from it); those pairs are left out of the marginal term (and out of
        InfoNCE's negatives). Used with ``marginal="all"`` and InfoNCE."""
        a, b = self._prepare(a, b)
        if exclude is not None:
            if exclude.shape != (a.shape[0], a.shape[0]):
                raise ValueError(f"exclude must be [{a.shape[0]}, {a.shape[0]}]; got {tuple(exclude.shape)}")
            exclude = exclude.to(device=a.device, dtype=torch.bool)
        # Autocast would silently run the critic's matmuls in fp16/bf16.
        with torch.autocast(device_type=a.device.type, enabled=False):
            return self._bound(a, b, generator, exclude)

    def _bound(self, a, b, generator, exclude=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class _MarginalPairsMixin:
    """Joint scores and product-of-marginals scores for "dv" and "jsd"."""

    marginal: str
    critic: ConcatCritic

    def _check_marginal(self, marginal: str) -> str:
        if marginal not in MARGINAL_MODES:
            raise ValueError(
                f"unknown marginal mode {marginal!r}; valid: {', '.join(MARGINAL_MODES)}"
            )
        return marginal

    def _joint_and_marginal(
        self, a: torch.Tensor, b: torch.Tensor, generator: Optional[torch.Generator],
        exclude: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        n = a.shape[0]
        if self.marginal == "all":
            s = self.critic.score_matrix(a, b)
            off_diag = ~torch.eye(n, dtype=torch.bool, device=s.device)
            if exclude is not None:
                off_diag = off_diag & ~exclude
                if not bool(off_diag.any()):
                    raise ValueError("every marginal pair is excluded: no two rows are independent")
            return s.diagonal(), s[off_diag]
        # "shuffle": p is a random permutation; pairing a[p[k]] with b[p[k+1]]
        # (cyclically) never pairs a row with itself, i.e. it is a derangement.
        if generator is not None:
            p = torch.randperm(n, generator=generator, device=generator.device).to(a.device)
        else:
            p = torch.randperm(n, device=a.device)
        joint = self.critic.pair_scores(a, b)
        marg = self.critic.pair_scores(a[p], b[p.roll(-1)])
        return joint, marg


class JSDEstimator(_MarginalPairsMixin, MIEstimator):
    """Jensen-Shannon bound (f-GAN / Deep InfoMax); value in [-2 log 2, 0], not nats."""

    name = "jsd"
    options = ("marginal",)

    def __init__(self, in_dim: int, marginal: str = DEFAULT_MARGINAL, **critic_options) -> None:
        super().__init__(in_dim, **critic_options)
        self.marginal = self._check_marginal(marginal)

    def _bound(self, a, b, generator, exclude=None):
        joint, marg = self._joint_and_marginal(a, b, generator, exclude)
        return (-F.softplus(-joint)).mean() - F.softplus(marg).mean()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, marginal={self.marginal!r}"


class DVEstimator(_MarginalPairsMixin, MIEstimator):
    """Donsker-Varadhan bound (MINE), in nats.

    ``bias_correction=True``: the gradient of ``log E_marg[e^T]`` is
    ``grad E[e^T] / E[e^T]``; with small batches the denominator is noisy and
    makes the gradient biased, so MINE replaces it by an exponential moving
    average ``ma`` (rate ``ma_rate``).  The value returned is still the plain DV
    estimate; only the gradient changes.  ``ma`` is kept in log space (no
    overflow) in buffers, so it is saved in ``state_dict`` for exact resumes,
    and it is updated only in training mode with autograd enabled.
    """

    name = "dv"
    options = ("marginal", "bias_correction")

    def __init__(self, in_dim: int, marginal: str = DEFAULT_MARGINAL, bias_correction: bool = False,
                 ma_rate: float = 0.01, **critic_options) -> None:
        super().__init__(in_dim, **critic_options)
        self.marginal = self._check_marginal(marginal)
        if not 0.0 < ma_rate <= 1.0:
            raise ValueError(f"MINE moving-average rate must be in (0, 1]; got ma_rate={ma_rate!r}")
        self.bias_correction = bool(bias_correction)
        self.ma_rate = float(ma_rate)
        # Registered even when unused so state_dict keys do not depend on the switch.
        self.register_buffer("ma_log", torch.zeros(()))
        self.register_buffer("ma_steps", torch.zeros((), dtype=torch.long))

    def _bound(self, a, b, generator, exclude=None):
        joint, marg = self._joint_and_marginal(a, b, generator, exclude)
        log_mean_exp = torch.logsumexp(marg, dim=0) - math.log(marg.numel())
        estimate = joint.mean() - log_mean_exp
        if not (self.bias_correction and self.training and torch.is_grad_enabled()):
            return estimate
        with torch.no_grad():
            cur = log_mean_exp.detach().to(self.ma_log.dtype)
            r = self.ma_rate
            # log((1 - r) * ma + r * cur), stably; the first step starts at cur.
            # torch.where rather than an `if` so CUDA needs no host sync.
            blended = cur if r == 1.0 else torch.logaddexp(self.ma_log + math.log1p(-r),
                                                           cur + math.log(r))
            self.ma_log.copy_(torch.where(self.ma_steps == 0, cur, blended))
            self.ma_steps += 1
        # d/dtheta exp(lme - log ma) = grad E[e^T] / ma; subtract its value so
        # the returned number is the unchanged DV estimate.
        surrogate = torch.exp(log_mean_exp - self.ma_log.to(log_mean_exp.dtype))
        return joint.mean() - log_mean_exp.detach() - (surrogate - surrogate.detach())

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, marginal={self.marginal!r}, "
                f"bias_correction={self.bias_correction}, ma_rate={self.ma_rate}")


class InfoNCEEstimator(MIEstimator):
    """InfoNCE bound in nats over the full B x B score matrix; always <= log B."""

    name = "infonce"

    def _bound(self, a, b, generator, exclude=None):
        s = self.critic.score_matrix(a, b)
        n = a.shape[0]
        if exclude is not None:
            # Dependent pairs are not negatives; the bound is then log of each row's
            # candidate count, averaged (log B without exclusions).
            keep = ~exclude | torch.eye(n, dtype=torch.bool, device=s.device)
            s = s.masked_fill(~keep, float("-inf"))
            log_count = torch.log(keep.sum(dim=1).to(s.dtype)).mean()
        else:
            log_count = math.log(n)
        # Row i: classify the true partner b_i among all b_j.
        log_softmax_diag = s.diagonal() - torch.logsumexp(s, dim=1)
        return log_softmax_diag.mean() + log_count


MI_ESTIMATORS: Dict[str, Type[MIEstimator]] = {
    "dv": DVEstimator,
    "infonce": InfoNCEEstimator,
    "jsd": JSDEstimator,
}


def build_mi_estimator(
    name: str,
    in_dim: int,
    hidden: int = DEFAULT_HIDDEN,
    layers: int = DEFAULT_LAYERS,
    **options,
) -> MIEstimator:
    """Build the estimator registered as ``name`` ("dv", "infonce", "jsd").

    ``options`` go to the estimator class: ``in_dim_b``, ``activation`` for all;
    ``marginal`` ("all" | "shuffle") for "dv" and "jsd"; ``bias_correction``
    and ``ma_rate`` for "dv".  Unknown names raise ``ValueError`` listing the
    valid ones; options an estimator does not take raise ``TypeError``.
    """
    key = str(name).strip().lower()
    if key not in MI_ESTIMATORS:
        raise ValueError(f"unknown MI estimator '{name}'; valid: {', '.join(sorted(MI_ESTIMATORS))}")
    return MI_ESTIMATORS[key](in_dim, hidden=hidden, layers=layers, **options)


def estimator_options(name: str, **candidates) -> Dict[str, object]:
    """Of ``candidates`` (e.g. a config's marginal and bias_correction), the options the
    estimator ``name`` takes: a caller holding every setting passes them all."""
    cls = MI_ESTIMATORS[str(name).strip().lower()]
    return {k: v for k, v in candidates.items() if k in cls.options}
