"""Tests for e2mim_engine/data/mixup_sampler.py (CPU only, fast)."""

import math
import random
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from e2mim_engine.data.mixup_sampler import (  # noqa: E402
    ClassMixupBatchSampler,
    mix,
    mix_targets,
    pair_indices,
    sample_lambda,
)


def label_sets():
    """(description, labels): balanced, 1-shot, 2-class, imbalanced, non-contiguous."""
    rng = random.Random(0)
    yield "16shot-5cls", [c for c in range(5) for _ in range(16)]
    yield "1shot-10cls", list(range(10))
    yield "1shot-2cls", [0, 1]
    yield "2cls", [0, 1, 1, 0, 1, 1, 1]
    yield "imbalanced", [0] * 20 + [1] + [2] * 3
    yield "sparse-labels", [7, 7, 42, 3, 42, 3, 1000]
    yield "random", [rng.randrange(6) for _ in range(37)]


SHAPES = [(name, labels, bs, drop_last)
          for name, labels in label_sets()
          for bs in (2, 3, 4, 7, 8, 32)
          for drop_last in (False, True)]


def check_epoch(labels, batches, batch_size, drop_last):
    n, m = len(labels), batch_size // 2
    anchors = []
    for batch in batches:
        assert len(batch) % 2 == 0 and 2 <= len(batch) <= 2 * m
        half = len(batch) // 2
        first, second = pair_indices(len(batch))
        for k, kp in zip(first.tolist(), second.tolist()):
            assert labels[batch[k]] != labels[batch[kp]]
        assert all(0 <= i < n for i in batch)
        anchors += batch[:half]
    # Only the last batch may be short.
    assert all(len(b) == 2 * m for b in batches[:-1])
    if drop_last and n >= m:
        assert sorted(anchors) == sorted(set(anchors))  # no anchor twice
        assert len(anchors) == (n // m) * m
        assert all(len(b) == 2 * m for b in batches)
    else:
        assert sorted(anchors) == list(range(n))  # every index once as an anchor
        assert len(batches) == math.ceil(n / m)


@pytest.mark.parametrize("name,labels,bs,drop_last", SHAPES,
                         ids=[f"{s[0]}-bs{s[2]}-drop{int(s[3])}" for s in SHAPES])
def test_epoch_invariants_over_seeds(name, labels, bs, drop_last):
    for seed in range(4):
        sampler = ClassMixupBatchSampler(labels, bs, seed=seed, drop_last=drop_last)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            check_epoch(labels, batches, bs, drop_last)


def test_tensor_labels_and_dataloader():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    ds = TensorDataset(torch.arange(len(labels)), labels)
    sampler = ClassMixupBatchSampler(labels, batch_size=4, seed=3)
    loader = DataLoader(ds, batch_sampler=sampler)
    seen = []
    for idx, y in loader:
        m = len(idx) // 2
        assert (y[:m] != y[m:]).all()
        seen += idx[:m].tolist()
    assert sorted(seen) == list(range(len(labels)))
    assert len(loader) == len(sampler) == 4


def test_one_shot_two_classes_batch_two():
    sampler = ClassMixupBatchSampler([5, 9], batch_size=2, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(batches) == [[0, 1], [1, 0]]


def test_odd_batch_size_rounds_down():
    sampler = ClassMixupBatchSampler(list(range(10)), batch_size=7, seed=0)
    assert sampler.pairs_per_batch == 3
    assert [len(b) for b in sampler] == [6, 6, 6, 2]
    sampler = ClassMixupBatchSampler(list(range(3)), batch_size=3, seed=0)
    assert [len(b) for b in sampler] == [2, 2, 2]


def test_short_final_batch_and_drop_last():
    labels = [c for c in range(3) for _ in range(5)]  # 15 items, 4 pairs per batch
    keep = ClassMixupBatchSampler(labels, 8, seed=0, drop_last=False)
    drop = ClassMixupBatchSampler(labels, 8, seed=0, drop_last=True)
    assert [len(b) for b in keep] == [8, 8, 8, 6]
    assert [len(b) for b in drop] == [8, 8, 8]
    assert len(keep) == 4 and len(drop) == 3
    # A dataset smaller than one batch still yields its one short batch.
    tiny = ClassMixupBatchSampler([0, 1, 2], 32, seed=0, drop_last=True)
    assert len(tiny) == 1 and [len(b) for b in tiny] == [6]


def test_num_batches_cuts_the_epoch():
    labels = [c for c in range(5) for _ in range(4)]  # 20 items
    full = ClassMixupBatchSampler(labels, 8, seed=0, drop_last=True)  # 4 pairs: 5 batches
    short = ClassMixupBatchSampler(labels, 8, seed=0, drop_last=True, num_batches=2)  # CoOp's 20 // 8
    assert len(full) == 5 and len(short) == 2
    for epoch in range(3):
        full.set_epoch(epoch)
        short.set_epoch(epoch)
        batches = list(short)
        assert batches == list(full)[:2]  # the first batches of the full epoch
        anchors = [i for b in batches for i in b[:4]]
        assert len(set(anchors)) == 8
        for b in batches:
            assert all(labels[b[k]] != labels[b[k + 4]] for k in range(4))
    tiny = ClassMixupBatchSampler([0, 1, 2], 32, seed=0, drop_last=True, num_batches=1)
    assert [len(b) for b in tiny] == [6]
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="num_batches"):
            ClassMixupBatchSampler(labels, 8, seed=0, drop_last=True, num_batches=bad)


def test_deterministic_per_seed_and_epoch():
    labels = [c for c in range(4) for _ in range(6)]
    a = ClassMixupBatchSampler(labels, 6, seed=11)
    b = ClassMixupBatchSampler(labels, 6, seed=11)
    for epoch in (0, 1, 7):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b) == a.batches_for_epoch(epoch)
    # Re-running an epoch (resume) gives the same batches.
    a.set_epoch(3)
    first = list(a)
    a.set_epoch(3)
    assert list(a) == first
    # set_epoch changes the batches; so does the seed.
    a.set_epoch(4)
    assert list(a) != first
    c = ClassMixupBatchSampler(labels, 6, seed=12)
    c.set_epoch(3)
    assert list(c) != first


def test_epoch_advances_without_set_epoch():
    labels = [c for c in range(4) for _ in range(6)]
    s = ClassMixupBatchSampler(labels, 6, seed=1)
    e0, e1 = list(s), list(s)
    assert e0 == s.batches_for_epoch(0) and e1 == s.batches_for_epoch(1)
    assert e0 != e1 and s.epoch == 2


def test_default_seed_comes_from_generator_or_global_rng():
    labels = list(range(6))
    g1 = ClassMixupBatchSampler(labels, 4, generator=torch.Generator().manual_seed(5))
    g2 = ClassMixupBatchSampler(labels, 4, generator=torch.Generator().manual_seed(5))
    assert g1.seed == g2.seed and list(g1) == list(g2)
    torch.manual_seed(9)
    s1 = ClassMixupBatchSampler(labels, 4)
    torch.manual_seed(9)
    s2 = ClassMixupBatchSampler(labels, 4)
    assert s1.seed == s2.seed


def test_partner_is_uniform_over_other_classes():
    labels = [0, 0, 0, 1, 2]  # partners of class-0 anchors: {3, 4}; of index 3: {0, 1, 2, 4}
    s = ClassMixupBatchSampler(labels, 2, seed=0)
    partners = {i: Counter() for i in range(5)}
    epochs = 400
    for e in range(epochs):
        for anchor, partner in s.batches_for_epoch(e):
            partners[anchor][partner] += 1
    assert set(partners[0]) == {3, 4} and set(partners[3]) == {0, 1, 2, 4}
    for i, counts in partners.items():
        expected = epochs / len(counts)
        for c in counts.values():  # ~5 sigma of a binomial at these sizes
            assert abs(c - expected) < 5 * math.sqrt(expected), (i, counts)


def test_anchor_order_is_random():
    s = ClassMixupBatchSampler(list(range(50)), 100, seed=0)
    anchors = list(s)[0][:50]
    assert anchors != list(range(50)) and sorted(anchors) == list(range(50))


def test_errors():
    with pytest.raises(ValueError, match=r"DATALOADER\.TRAIN_X\.BATCH_SIZE must be >= 2 \(got 1\)"):
        ClassMixupBatchSampler([0, 1], batch_size=1)
    with pytest.raises(ValueError, match=r"DATALOADER\.TRAIN_X\.BATCH_SIZE"):
        ClassMixupBatchSampler([0, 1], batch_size=0)
    with pytest.raises(ValueError, match="single class"):
        ClassMixupBatchSampler([3, 3, 3], batch_size=4)
    with pytest.raises(ValueError, match="single class"):
        ClassMixupBatchSampler([0], batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        ClassMixupBatchSampler([], batch_size=4)
    with pytest.raises(ValueError, match="integer"):
        ClassMixupBatchSampler([0.0, 1.0], batch_size=4)


def test_pair_indices():
    first, second = pair_indices(6)
    assert first.tolist() == [0, 1, 2] and second.tolist() == [3, 4, 5]
    for bad in (0, 3, -2):
        with pytest.raises(ValueError, match="even"):
            pair_indices(bad)


# -- Mixup arithmetic ---------------------------------------------------------

def test_sample_lambda():
    lam = sample_lambda(1000, 1.0, torch.Generator().manual_seed(0))
    assert lam.shape == (1000,) and lam.dtype == torch.float32
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean().item() - 0.5) < 0.05  # Beta(1, 1) = U(0, 1)
    assert abs(lam.var().item() - 1 / 12) < 0.01
    again = sample_lambda(1000, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(lam, again)
    # Small alpha: mass near 0 and 1, still finite.
    small = sample_lambda(500, 0.05, torch.Generator().manual_seed(1))
    assert torch.isfinite(small).all() and ((small < 0.05) | (small > 0.95)).float().mean() > 0.7
    assert sample_lambda(0, 1.0).shape == (0,)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            sample_lambda(4, bad)


def test_mix_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    lam = torch.tensor([0.2, 0.7])
    imgs_a, imgs_b = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    out = mix(imgs_a, imgs_b, lam)
    assert out.shape == imgs_a.shape
    for k in range(2):
        for c in range(3):
            for y in range(4):
                for x in range(5):
                    want = lam[k] * imgs_a[k, c, y, x] + (1 - lam[k]) * imgs_b[k, c, y, x]
                    assert torch.isclose(out[k, c, y, x], want)
    feats_a, feats_b = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    out = mix(feats_a, feats_b, lam)
    for k in range(2):
        for d in range(8):
            assert torch.isclose(out[k, d], lam[k] * feats_a[k, d] + (1 - lam[k]) * feats_b[k, d])
    torch.testing.assert_close(mix(feats_a, feats_b, 0.25), 0.25 * feats_a + 0.75 * feats_b)
    half = mix(feats_a.half(), feats_b.half(), lam)
    assert half.dtype == torch.float16
    with pytest.raises(ValueError):
        mix(feats_a, feats_b, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError):
        mix(feats_a, imgs_a, lam)


def test_mix_targets():
    y_a, y_b = torch.tensor([0, 3, 1]), torch.tensor([2, 0, 3])
    lam = torch.tensor([0.1, 0.5, 0.9])
    soft = mix_targets(y_a, y_b, lam, num_classes=4)
    assert soft.shape == (3, 4) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(1), torch.ones(3))
    torch.testing.assert_close(soft[torch.arange(3), y_a], lam)
    torch.testing.assert_close(soft[torch.arange(3), y_b], 1 - lam)
    other = torch.ones(3, 4, dtype=torch.bool)
    other[torch.arange(3), y_a] = False
    other[torch.arange(3), y_b] = False
    assert (soft[other] == 0).all()
    # Soft CE with these targets equals lam * CE(y_a) + (1 - lam) * CE(y_b).
    logits = torch.randn(3, 4)
    logp = torch.log_softmax(logits, 1)
    ce_soft = -(soft * logp).sum(1)
    ce_mixed = lam * -logp[torch.arange(3), y_a] + (1 - lam) * -logp[torch.arange(3), y_b]
    torch.testing.assert_close(ce_soft, ce_mixed)
    with pytest.raises(ValueError, match="labels must lie"):
        mix_targets(y_a, y_b, lam, num_classes=3)


def test_end_to_end_mixup_batch():
    """What the trainer does: collate, split halves, mix, build soft labels."""
    labels = [c for c in range(3) for _ in range(4)]
    images = torch.randn(len(labels), 3, 8, 8)
    ds = TensorDataset(images, torch.tensor(labels))
    loader = DataLoader(ds, batch_sampler=ClassMixupBatchSampler(labels, 6, seed=0))
    g = torch.Generator().manual_seed(0)
    for x, y in loader:
        first, second = pair_indices(len(x))
        lam = sample_lambda(len(first), 1.0, g)
        x_mix = mix(x[first], x[second], lam)
        y_soft = mix_targets(y[first], y[second], lam, 3)
        assert x_mix.shape == (len(first), 3, 8, 8)
        torch.testing.assert_close(y_soft.sum(1), torch.ones(len(first)))
        assert (y[first] != y[second]).all()
        torch.testing.assert_close(y_soft[torch.arange(len(first)), y[first]], lam)
