"""Class-wise Mixup batch sampler and the Mixup arithmetic used by E2MIM.

E2MIM mixes every training image with a partner *from another class*
(x~ = lam * x_i + (1 - lam) * x_j, soft label lam * y_i + (1 - lam) * y_j).
``ClassMixupBatchSampler`` builds batches that already contain those pairs, so
the trainer never has to search a batch for a partner of a different class
(which may not exist with 1-shot data or tiny batches).

Batch layout
------------
Every yielded batch is a list of ``2 * m`` dataset indices::

    [i_1, ..., i_m, j_1, ..., j_m]      label(i_k) != label(j_k) for every k

The first half are the *anchors*, the second half their *partners*: the
partner of position ``k`` is position ``k + m`` (``pair_indices`` returns both
position lists).  With ``DataLoader(dataset, batch_sampler=sampler)`` the
collated batch keeps that order, so ``x[:m]`` and ``x[m:]`` are the two sides
of the Mixup.

Epoch
-----
* Anchors: a random permutation of all dataset indices, cut into chunks of
  ``m = batch_size // 2``; every index is an anchor exactly once per epoch.
* Partners: for each anchor, drawn uniformly (independently, with
  replacement) from all items whose label differs from the anchor's.
* ``batch_size`` is the length of a full batch; an odd value is rounded down
  to even (``m = batch_size // 2`` pairs), so a batch never exceeds it.
  Because each batch holds m anchors, an epoch has ``ceil(N / m)`` batches,
  about twice as many as a plain random sampler with the same batch size
  (each image is seen once as an anchor and, on average, once as a partner).
* ``drop_last=True`` drops a final batch with fewer than m pairs, but, as
  Dassl does for its train loader, only when the dataset has at least m items
  (a 1-shot dataset smaller than one batch still yields one short batch
  rather than an empty epoch).  With ``drop_last=False`` the final batch holds
  the remaining ``r < m`` pairs (length ``2 * r``).
* ``num_batches`` (optional) cuts the epoch to its first ``num_batches``
  batches, e.g. as many as a plain sampler with the same batch size yields
  (``ceil(N / batch_size)``), so an epoch costs what a CoOp epoch costs; each
  item is then an anchor with probability about 1/2 per epoch.  It must lie
  in ``[1, len]`` where ``len`` is the default epoch length above.

Determinism
-----------
The permutation and the partners of epoch ``e`` come from a fresh
``torch.Generator`` seeded from ``(seed, e)``, so the batches depend only on
``(labels, batch_size, drop_last, seed, e)``: a resumed run that calls
``set_epoch(e)`` draws exactly the batches of the uninterrupted run.  Call
``set_epoch(epoch)`` before iterating each epoch; if you never do, each
``iter()`` advances the epoch counter by one so consecutive epochs still
differ.  ``seed`` defaults to a value drawn from ``generator`` if given, else
from torch's global RNG (so ``torch.manual_seed`` / the config SEED fixes it).
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Sampler

from ..seeding import epoch_seed

__all__ = [
    "ClassMixupBatchSampler",
    "pair_indices",
    "sample_lambda",
    "mix",
    "mix_targets",
]

_BATCH_SIZE_KEY = "DATALOADER.TRAIN_X.BATCH_SIZE"


class ClassMixupBatchSampler(Sampler[List[int]]):
    """Yields ``[anchors..., partners...]`` index lists with cross-class pairs.

    Args:
        labels: one integer class label per dataset index (list, tensor or
            array; labels need not be contiguous).
        batch_size: full batch length (``DATALOADER.TRAIN_X.BATCH_SIZE``);
            must be >= 2; odd values are rounded down to even.
        seed: base seed; batches of epoch e depend only on (seed, e).
        generator: used only to draw ``seed`` when ``seed`` is None.
        drop_last: drop a final batch with fewer than ``batch_size // 2``
            pairs (only when the dataset has at least that many items).
        num_batches: batches per epoch, at most the default length (every
            item an anchor once); None keeps the default.
    """

    def __init__(
        self,
        labels: Union[Sequence[int], torch.Tensor],
        batch_size: int,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
        num_batches: Optional[int] = None,
    ) -> None:
        super().__init__()
        labels_t = torch.as_tensor(labels).reshape(-1)
        if labels_t.numel() == 0:
            raise ValueError("class-wise Mixup sampler got an empty training set (no labels).")
        if labels_t.is_floating_point() or labels_t.is_complex() or labels_t.dtype == torch.bool:
            raise ValueError(f"class-wise Mixup sampler needs integer class labels; got dtype {labels_t.dtype}")
        labels_t = labels_t.to(device="cpu", dtype=torch.long)
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 2:
            raise ValueError(
                f"class-wise Mixup needs at least one pair of images per batch, so "
                f"{_BATCH_SIZE_KEY} must be >= 2 (got {batch_size!r})."
            )
        classes, counts = torch.unique(labels_t, sorted=True, return_counts=True)
        if classes.numel() < 2:
            raise ValueError(
                f"class-wise Mixup pairs each image with one of a different class, but the "
                f"training set has a single class ({int(classes[0])}, {labels_t.numel()} items)."
            )
        self.labels = labels_t
        self.batch_size = int(batch_size)
        self.pairs_per_batch = self.batch_size // 2
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        self.seed = int(seed)
        self.epoch = 0
        self.num_batches = None
        full = len(self)
        if num_batches is not None:
            if isinstance(num_batches, bool) or int(num_batches) != num_batches or not 1 <= num_batches <= full:
                raise ValueError(
                    f"class-wise Mixup sampler: num_batches must be an integer in [1, {full}] "
                    f"(the batches that hold every item once as an anchor); got {num_batches!r}"
                )
            self.num_batches = int(num_batches)

        # Items sorted by label: class c occupies positions [start_c, start_c + n_c)
        # of `_by_label`, so "uniform over items not of class c" is "uniform over
        # N - n_c positions, skipping that block" (see _draw_partners).
        self._by_label = torch.argsort(labels_t, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        class_pos = torch.searchsorted(classes, labels_t)  # label -> class number
        self._start = starts[class_pos]  # per item: start of its class block
        self._count = counts[class_pos]  # per item: size of its class

    # -- Sampler protocol ----------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next ``iter()`` yields."""
        self.epoch = int(epoch)

    def _effective_drop_last(self) -> bool:
        return self.drop_last and len(self.labels) >= self.pairs_per_batch

    def __len__(self) -> int:
        if self.num_batches is not None:
            return self.num_batches
        n, m = len(self.labels), self.pairs_per_batch
        return n // m if self._effective_drop_last() else math.ceil(n / m)

    def batches_for_epoch(self, epoch: int) -> List[List[int]]:
        """All batches of ``epoch`` (pure: does not touch ``self.epoch``)."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, "mixup"))
        n, m = len(self.labels), self.pairs_per_batch
        anchors = torch.randperm(n, generator=g)
        partners = self._draw_partners(anchors, g)
        out = []
        for k in range(len(self)):
            a = anchors[k * m:(k + 1) * m]
            p = partners[k * m:(k + 1) * m]
            out.append(torch.cat([a, p]).tolist())
        return out

    def __iter__(self) -> Iterator[List[int]]:
        epoch = self.epoch
        self.epoch += 1  # keep epochs distinct when set_epoch is never called
        return iter(self.batches_for_epoch(epoch))

    def _draw_partners(self, anchors: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        start, count = self._start[anchors], self._count[anchors]
        others = n - count  # >= 1: there are at least two classes
        # Uniform integer in [0, others) per anchor (float64 keeps the bias of
        # floor(u * k) negligible for any realistic dataset size).
        u = torch.rand(len(anchors), generator=g, dtype=torch.float64)
        r = torch.minimum((u * others).long(), others - 1)
        r = torch.where(r >= start, r + count, r)  # skip the anchor's own class block
        return self._by_label[r]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self.labels)}, batch_size={self.batch_size}, "
                f"pairs_per_batch={self.pairs_per_batch}, drop_last={self.drop_last}, "
                f"num_batches={len(self)}, seed={self.seed})")


def pair_indices(batch_len: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions of anchors and of their partners in a batch of ``batch_len``.

    Returns ``(arange(m), arange(m, 2m))`` with ``m = batch_len // 2``: the
    partner of position ``k`` is ``k + m``.  ``batch_len`` must be even and > 0.
    """
    if batch_len <= 0 or batch_len % 2:
        raise ValueError(
            f"a class-wise Mixup batch holds anchor/partner pairs, so its length must be a "
            f"positive even number; got {batch_len}"
        )
    m = batch_len // 2
    return torch.arange(m), torch.arange(m, 2 * m)


def sample_lambda(
    batch_pairs: int,
    alpha: float,
    generator: Optional[torch.Generator] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> torch.Tensor:
    """One ``lam ~ Beta(alpha, alpha)`` per pair, shape ``[batch_pairs]``, float32.

    Drawn on the generator's device (CPU without one) and moved to ``device``.
    Beta is sampled as the first coordinate of Dirichlet(alpha, alpha), which
    accepts a generator and stays finite for small alpha.
    """
    if not alpha > 0 or math.isinf(alpha):
        raise ValueError(f"Mixup alpha must be a positive finite number (Beta(alpha, alpha)); got {alpha!r}")
    if batch_pairs < 0:
        raise ValueError(f"batch_pairs must be >= 0; got {batch_pairs}")
    src = generator.device if generator is not None else torch.device("cpu")
    conc = torch.full((batch_pairs, 2), float(alpha), dtype=torch.float32, device=src)
    lam = torch._sample_dirichlet(conc, generator=generator)[:, 0]
    return lam if device is None else lam.to(device)


def _lam_like(lam: Union[float, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(lam, device=x.device)
    if lam.dim() == 0:
        return lam.to(x.dtype)
    if lam.dim() != 1 or lam.shape[0] != x.shape[0]:
        raise ValueError(
            f"lam must be a scalar or have one value per pair ({x.shape[0]}); got shape {tuple(lam.shape)}"
        )
    return lam.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))  # broadcast over trailing dims


def mix(x_a: torch.Tensor, x_b: torch.Tensor, lam: Union[float, torch.Tensor]) -> torch.Tensor:
    """``lam * x_a + (1 - lam) * x_b`` with ``lam`` ([m] or scalar) broadcast
    over the trailing dims: works for images ``[m, 3, H, W]`` and features
    ``[m, D]``.  Computed in ``x_a``'s dtype."""
    if x_a.shape != x_b.shape:
        raise ValueError(f"cannot mix tensors of shapes {tuple(x_a.shape)} and {tuple(x_b.shape)}")
    lam_x = _lam_like(lam, x_a)
    return lam_x * x_a + (1 - lam_x) * x_b.to(x_a.dtype)


def mix_targets(
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: Union[float, torch.Tensor],
    num_classes: int,
) -> torch.Tensor:
    """Soft labels ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``, ``[m, C]``.

    Rows sum to 1.  Float32 unless ``lam`` is a floating tensor of another
    dtype; on ``y_a``'s device.
    """
    y_a, y_b = torch.as_tensor(y_a), torch.as_tensor(y_b)
    if y_a.shape != y_b.shape or y_a.dim() != 1:
        raise ValueError(f"y_a and y_b must be 1-D with the same length; got {tuple(y_a.shape)} and {tuple(y_b.shape)}")
    y_b = y_b.to(y_a.device)
    for y in (y_a, y_b):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}); got values from {int(y.min())} to {int(y.max())}")
    dtype = lam.dtype if isinstance(lam, torch.Tensor) and lam.is_floating_point() else torch.float32
    onehot_a = torch.nn.functional.one_hot(y_a.long(), num_classes).to(dtype)
    onehot_b = torch.nn.functional.one_hot(y_b.long(), num_classes).to(dtype)
    return mix(onehot_a, onehot_b, lam)
