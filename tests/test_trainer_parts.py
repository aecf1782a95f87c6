"""The trainer base in parts: the checkpointer and the feature caches work alone (no trainer,
no CLIP), and a built trainer's public train_step / eval_step / evaluate are the loop's."""
import json
import os
from collections import OrderedDict

import pytest
import torch

from conftest import demo_args, make_cfg
from e2mim_engine.checkpointer import Checkpointer
from e2mim_engine.errors import UserError
from e2mim_engine.feature_caches import FeatureCaches
from e2mim_engine.run import MANIFEST
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from test_feature_cache import Items


class Net(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 2, generator=g))
        self.frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)


def models(seed=0, identity=None):
    m = OrderedDict(a=Net(seed), b=Net(seed + 1))
    o = OrderedDict((k, torch.optim.SGD(v.parameters(), lr=0.1, momentum=0.9)) for k, v in m.items())
    s = OrderedDict((k, torch.optim.lr_scheduler.StepLR(v, 1, gamma=0.5)) for k, v in o.items())
    ident = identity or {"trainer": "T", "config_hash": "h"}
    return m, o, s, Checkpointer(m, o, s, ident, {"OPTIM.LR": 0.1}, checkpoint_freq=2)


def step(m, o, s):
    for k in m:
        o[k].zero_grad()
        (m[k].w ** 2).sum().backward()
        o[k].step()
        s[k].step()


def test_checkpointer_saves_prunes_and_resumes_alone(tmp_path):
    m, o, s, ck = models()
    for epoch in range(3):
        step(m, o, s)
        ck.save(epoch, str(tmp_path), max_epoch=5)
    # epoch 2 is a CHECKPOINT_FREQ multiple; 1 was only for resuming; 3 is the newest
    assert sorted(os.listdir(tmp_path / "a")) == ["checkpoint", "model.pth.tar-2", "model.pth.tar-3"]
    man = json.load(open(tmp_path / MANIFEST))
    assert (man["epoch"], man["models"]) == (3, {"a": "model.pth.tar-3", "b": "model.pth.tar-3"})
    assert man["config"] == {"OPTIM.LR": 0.1}
    # a fresh set of models (other init) resumes to exactly the saved state
    m2, o2, s2, ck2 = models(seed=7)
    assert ck2.resume(str(tmp_path)) == (3, None)
    for k in m:
        assert torch.equal(m2[k].w, m[k].w) and not torch.equal(m2[k].frozen, m[k].frozen)  # frozen: not saved
        assert o2[k].state_dict()["state"][0]["momentum_buffer"].equal(o[k].state_dict()["state"][0]["momentum_buffer"])
        assert s2[k].get_last_lr() == s[k].get_last_lr() == [0.1 * 0.5 ** 3]
    # evaluation load of one epoch file, of some models only
    m3, _, _, ck3 = models(seed=9)
    b_before = m3["b"].w.detach().clone()
    assert ck3.load(str(tmp_path), epoch=2, names=["a"]) == 2
    saved = torch.load(tmp_path / "a" / "model.pth.tar-2", weights_only=True)["state_dict"]["w"]
    assert torch.equal(m3["a"].w, saved) and not torch.equal(saved, m["a"].w) and torch.equal(m3["b"].w, b_before)
    # another identity is refused, naming what differs
    _, _, _, other = models(identity={"trainer": "T", "config_hash": "other"})
    other.config = {"OPTIM.LR": 0.5}
    with pytest.raises(UserError, match=r"OPTIM.LR: 0.1 -> 0.5"):
        other.resume(str(tmp_path))


def test_checkpointer_best_file_and_empty_folder(tmp_path):
    m, o, s, ck = models()
    assert ck.resume(str(tmp_path)) == (0, None)
    step(m, o, s)
    ck.save(0, str(tmp_path), max_epoch=1, val_result=61.5, model_name="model-best.pth.tar")
    assert not (tmp_path / MANIFEST).exists()  # a best file is no epoch to resume from
    ck.save(0, str(tmp_path), max_epoch=1)
    assert ck.resume(str(tmp_path)) == (1, 61.5)
    m2, _, _, ck2 = models(seed=3)
    assert ck2.load(str(tmp_path)) == 1 and torch.equal(m2["b"].w, m["b"].w)


def test_feature_caches_alone(tmp_path):
    items = Items.make(str(tmp_path / "img"))

    class Loader:  # what the caches read of a loader: its dataset's items and transform, its batches
        class dataset:
            data_source, transform = items, staticmethod(Items.transform)
        batch_sampler = [[0, 1, 2], [3, 4, 5]]

    calls = []

    def encode(x):
        calls.append(x.shape[0])
        return Items.encode(x)

    def caches():
        return FeatureCaches(str(tmp_path / "c"), encode, lambda: {"what": "alone"}, torch.device("cpu"), seed=1)

    a = caches()
    feats, labels = a.eval_features(Loader, batch_size=4)
    assert feats.shape == (6, 16) and labels.tolist() == [d.label for d in items] and sum(calls) == 6
    a.eval_features(Loader, batch_size=4)  # from memory
    assert a.stats == {"eval_hits": 6, "eval_encoded": 6, "train_hits": 0, "train_encoded": 0}
    b = caches()  # another run: from the store, nothing encoded
    got, _ = b.eval_features(Loader, batch_size=4)
    assert torch.equal(got, feats) and sum(calls) == 6 and b.stats["eval_hits"] == 6
    # training views: 2 per image, encoded once, then served per epoch
    train = b.train_loader(Loader, views=2, batch_size=3)
    assert b.stats["train_encoded"] == 12 and sum(calls) == 18
    assert b.store(Items.transform).id != b.store(Items.transform, views=True).id
    batches = list(train)
    assert len(train) == 2 and [x["feat"].shape for x in batches] == [(3, 16), (3, 16)]
    assert caches().train_loader(Loader, views=2, batch_size=3) and sum(calls) == 18  # served, not encoded


def build(root, out, *extra, trainer="CoOp"):
    cfg = make_cfg(*demo_args(root, str(out), *extra, trainer=trainer))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def test_public_step_and_evaluation_are_the_loops(demo_root, tmp_path):
    ref = build(demo_root, tmp_path / "ref", "OPTIM.MAX_EPOCH", 1)
    ref.train()
    # the same epoch driven from outside: train_step on the loader's batches, no train()
    t = build(demo_root, tmp_path / "ext", "OPTIM.MAX_EPOCH", 1)
    t.before_epoch()
    logged = [t.train_step(b) for b in t.train_loader_x]
    assert set(logged[0]) == {"loss", "acc"} and t.model_mode == "train"
    assert torch.equal(t.model.prompt_learner.ctx, ref.model.prompt_learner.ctx)
    # evaluate() writes nothing and gives what test() records
    t.update_lr()
    res = t.evaluate()
    assert not (tmp_path / "ext" / "results.json").exists()
    assert res["accuracy"] == json.load(open(tmp_path / "ref" / "results.json"))["accuracy"]
    # eval_step: logits of a batch in eval mode, without autograd
    batch = next(iter(t.test_loader))
    logits = t.eval_step(batch["img"])
    assert t.model_mode == "eval" and not logits.requires_grad
    assert logits.shape == (batch["img"].shape[0], t.num_classes)
    assert t.num_trainable_params() == t.model.prompt_learner.ctx.numel()


# ---- DATALOADER.TRAIN_X.REPEAT --------------------------------------------------------------
def test_repeat_passes_over_the_training_set_with_fresh_orders(demo_root, tmp_path):
    """REPEAT 2: every training image twice per epoch, one whole permutation per pass, twice
    the batches; REPEAT 1 keeps the plain loader (the published behaviour)."""
    from e2mim_engine.data.data_manager import DataManager, RepeatedBatchSampler
    one = DataManager(make_cfg(*demo_args(demo_root, str(tmp_path / "a"))))
    two = DataManager(make_cfg(*demo_args(demo_root, str(tmp_path / "b"), "DATALOADER.TRAIN_X.REPEAT", 2)))
    assert not isinstance(one.train_loader_x.batch_sampler, RepeatedBatchSampler)
    n, bs = len(two.dataset.train_x), 8
    assert len(two.train_loader_x) == 2 * len(one.train_loader_x) == 2 * (n // bs)
    torch.manual_seed(0)
    batches = list(two.train_loader_x.batch_sampler)
    first, second = sum(batches[:n // bs], []), sum(batches[n // bs:], [])
    assert len(set(first)) == len(first) == len(set(second)) == (n // bs) * bs  # each pass: no repeats
    assert first != second


def test_repeat_gives_a_per_epoch_sampler_one_epoch_number_per_pass():
    from e2mim_engine.data.data_manager import RepeatedBatchSampler

    class PerEpoch:
        epoch = None

        def set_epoch(self, e):
            self.epoch = e

        def __len__(self):
            return 1

        def __iter__(self):
            yield [self.epoch]

    r = RepeatedBatchSampler(PerEpoch(), 3)
    r.set_epoch(5)
    assert list(r) == [[15], [16], [17]] and len(r) == 3


@pytest.mark.parametrize("bad", [0, -1])
def test_repeat_must_be_a_positive_integer(demo_root, tmp_path, bad):
    from e2mim_engine.data.data_manager import DataManager
    from e2mim_engine.errors import ConfigError
    cfg = make_cfg(*demo_args(demo_root, str(tmp_path), "DATALOADER.TRAIN_X.REPEAT", bad))
    with pytest.raises(ConfigError, match=r"REPEAT must be an integer >= 1 \(passes over the training set"):
        DataManager(cfg)


def test_repeat_is_part_of_a_runs_identity_only_when_it_changes_what_runs_compute(demo_root, tmp_path):
    """Runs made before the key existed (one pass) keep their identity; REPEAT 2 is another run."""
    from e2mim_engine.run import config_items
    one = config_items(make_cfg(*demo_args(demo_root, str(tmp_path))))
    two = config_items(make_cfg(*demo_args(demo_root, str(tmp_path), "DATALOADER.TRAIN_X.REPEAT", 2)))
    assert "DATALOADER.TRAIN_X.REPEAT" not in one and two["DATALOADER.TRAIN_X.REPEAT"] == 2
