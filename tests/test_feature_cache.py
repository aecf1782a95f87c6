"""The image feature caches: cached evaluation equals uncached, hits are counted, a changed
image or transform is encoded again (and only that), writes are atomic and safe with two
writers, an unwritable folder falls back with a note, training views resume exactly, and
e2mim-cache reports and clears."""
import logging
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import demo_args, make_cfg
from e2mim_engine.data import Datum
from e2mim_engine.data.feature_cache import (CachedFeatureLoader, FeatureStore, cached_features, cached_views,
                                             image_key, list_stores)
from e2mim_engine.errors import ConfigError
from e2mim_engine.run import run_identity
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import TrainerBase, build_trainer
from e2mim_engine.utils import TEMP_SUFFIX, logger
from e2mim_tools import cache as cache_cli


def build(root, out, cache, *extra, trainer="CoOp"):
    cfg = make_cfg(*demo_args(root, str(out), "DATALOADER.FEATURE_CACHE.DIR", str(cache), *extra, trainer=trainer))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


@pytest.fixture
def notes():
    """The log lines of the run (the project logger does not propagate to caplog)."""
    lines = []

    class H(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    h = H()
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(h)


def uncached_logits(t):
    t.set_model_mode("eval")
    with torch.no_grad():
        return torch.cat([t.model_inference(b["img"]) for b in t.test_loader])


@pytest.mark.parametrize("trainer", ["CoOp", "CoCoOp", "ZeroshotCLIP"])
def test_cached_evaluation_equals_uncached(demo_root, tmp_path, trainer):
    t = build(demo_root, tmp_path / "o", tmp_path / "c", trainer=trainer)
    ref = uncached_logits(t)
    feats, labels = t.cached_eval_features(t.test_loader)
    assert t.feature_cache_stats["eval_encoded"] == len(labels) == ref.shape[0]
    with torch.no_grad():
        got = torch.cat([t.model_inference(feats[i:i + 7]) for i in range(0, len(labels), 7)])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert labels.tolist() == [d.label for d in t.dm.dataset.test]
    # test() through the cache and without it: the same result
    acc = t.test()
    off = build(demo_root, tmp_path / "o2", tmp_path / "c", "DATALOADER.FEATURE_CACHE.EVAL", False, trainer=trainer)
    assert off.test() == acc and off.feature_cache_stats["eval_hits"] == 0


def test_second_run_reads_the_cache_and_other_methods_share_it(demo_root, tmp_path, notes):
    cache = tmp_path / "c"
    a = build(demo_root, tmp_path / "a", cache)
    acc = a.test()
    n = len(a.dm.dataset.test)
    assert a.feature_cache_stats == {"eval_hits": 0, "eval_encoded": n, "train_hits": 0, "train_encoded": 0}
    assert any(f"0 of {n} images from" in ln and f"{n} encoded" in ln for ln in notes)
    a.test()  # a later test() of the same run: from memory, counted as hits
    assert a.feature_cache_stats["eval_hits"] == n and a.feature_cache_stats["eval_encoded"] == n
    b = build(demo_root, tmp_path / "b", cache)  # a new process would see the same
    assert b.test() == acc
    assert b.feature_cache_stats["eval_hits"] == n and b.feature_cache_stats["eval_encoded"] == 0
    other = build(demo_root, tmp_path / "k", cache, trainer="KgCoOp")  # another method, another seed
    other.test()
    assert other.feature_cache_stats["eval_encoded"] == 0
    # a prompted image encoder never uses it
    ivlp = build(demo_root, tmp_path / "i", cache, trainer="IVLP")
    assert not ivlp.eval_feature_cache_on()
    ivlp.test()
    assert ivlp.feature_cache_stats["eval_hits"] == ivlp.feature_cache_stats["eval_encoded"] == 0
    assert len(list_stores(str(cache))) == 1


def test_changed_image_or_transform_invalidates_exactly_that(demo_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(os.path.join(demo_root, "demo"), root / "demo")
    cache = tmp_path / "c"
    t = build(str(root), tmp_path / "a", cache)
    t.test()
    test_items = t.dm.dataset.test
    n = len(test_items)
    # one image rewritten (new size and time), one only touched (new time)
    rewritten, touched = test_items[0].impath, test_items[1].impath
    from PIL import Image
    Image.new("RGB", (40, 30), (10, 200, 10)).save(rewritten, format="JPEG")
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    b = build(str(root), tmp_path / "b", cache)
    b.test()
    assert (b.feature_cache_stats["eval_hits"], b.feature_cache_stats["eval_encoded"]) == (n - 2, 2)
    # the new features are the new image's: equal to encoding it now
    feats, _ = b.cached_eval_features(b.test_loader)
    img = b.test_loader.dataset[0]["img"].unsqueeze(0)
    torch.testing.assert_close(feats[:1], b.encode_frozen(img), rtol=1e-5, atol=1e-5)
    # another test transform: another store, everything encoded once, the first store intact
    c = build(str(root), tmp_path / "c2", cache, "INPUT.INTERPOLATION", "bilinear")
    c.test()
    assert (c.feature_cache_stats["eval_hits"], c.feature_cache_stats["eval_encoded"]) == (0, n)
    assert len(list_stores(str(cache))) == 2
    d = build(str(root), tmp_path / "d", cache)
    d.test()
    assert d.feature_cache_stats["eval_encoded"] == 0


def test_store_key_covers_backbone_precision_and_transform(demo_root, tmp_path):
    t = build(demo_root, tmp_path / "o", tmp_path / "c")
    tfm = t.test_loader.dataset.transform
    base = t.feature_store(tfm)
    ident = t.frozen_feature_identity()
    assert {"backbone", "backbone_sha256", "precision", "device", "torch", "code"} <= set(ident)
    assert base.identity["transform"] == repr(tfm)
    for change in ({"backbone_sha256": "0" * 64}, {"precision": "bf16"}, {"transform": "other"}):
        assert FeatureStore(base.root, dict(base.identity, **change)).id != base.id
    assert t.feature_store(t.train_loader_x.dataset.transform, views=True).id != base.id


class Items:
    """A fake image function: features of a folder of generated images without a CLIP."""

    @staticmethod
    def make(folder, n=6):
        from PIL import Image
        os.makedirs(folder, exist_ok=True)
        items = []
        for i in range(n):
            p = os.path.join(folder, f"{i}.png")
            Image.new("RGB", (8, 8), (i * 30, 100, 200 - i * 20)).save(p)
            items.append(Datum(p, i % 2))
        return items

    @staticmethod
    def transform(img):
        import torchvision.transforms.functional as TF
        return TF.to_tensor(img) + 0.01 * torch.rand(3, 8, 8)  # random, as an augmentation is

    @staticmethod
    def encode(x):
        return x.flatten(1)[:, :16]


def _fill_worker(folder, items, barrier):
    torch.set_num_threads(1)
    store = FeatureStore(folder, {"what": "concurrency"})
    barrier.wait()

    def slow(x):
        time.sleep(0.05)
        return Items.encode(x)

    cached_features(store, items, Items.transform, slow, torch.device("cpu"), batch_size=2)


def test_two_processes_filling_one_store(tmp_path):
    items = Items.make(str(tmp_path / "img"))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    ps = [ctx.Process(target=_fill_worker, args=(str(tmp_path / "c"), items, barrier)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
    assert [p.exitcode for p in ps] == [0, 0]
    store = FeatureStore(str(tmp_path / "c"), {"what": "concurrency"})
    names = os.listdir(store.folder)
    assert not [n for n in names if n.endswith(TEMP_SUFFIX)]
    feats, hits, encoded = cached_features(store, items, Items.transform, Items.encode, torch.device("cpu"), 4)
    assert (hits, encoded) == (len(items), 0) and feats.shape == (len(items), 16)


def test_a_write_that_dies_leaves_nothing(tmp_path, monkeypatch):
    items = Items.make(str(tmp_path / "img"))
    store = FeatureStore(str(tmp_path / "c"), {"what": "dies"})
    real = torch.save

    def dies(obj, f, *a, **k):
        if isinstance(obj, dict) and "keys" in obj:
            f.write(b"half a shard")
            raise OSError(28, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dies)
    feats, hits, encoded = cached_features(store, items, Items.transform, Items.encode, torch.device("cpu"), 4)
    assert encoded == len(items) and feats.shape[0] == len(items) and not store.writable
    assert [n for n in os.listdir(store.folder) if n != "identity.json"] == []
    monkeypatch.setattr(torch, "save", real)
    again = FeatureStore(str(tmp_path / "c"), {"what": "dies"})
    assert cached_features(again, items, Items.transform, Items.encode, torch.device("cpu"), 4)[2] == len(items)


def test_unreadable_shard_is_ignored_with_a_note(tmp_path, notes):
    items = Items.make(str(tmp_path / "img"))
    store = FeatureStore(str(tmp_path / "c"), {"what": "bad"})
    cached_features(store, items, Items.transform, Items.encode, torch.device("cpu"), 4)
    with open(os.path.join(store.folder, "shard-0-bad.pt"), "wb") as f:
        f.write(b"not a shard")
    again = FeatureStore(str(tmp_path / "c"), {"what": "bad"})
    assert cached_features(again, items, Items.transform, Items.encode, torch.device("cpu"), 4)[1] == len(items)
    assert any("unreadable" in ln and "shard-0-bad.pt" in ln for ln in notes)


def test_unwritable_cache_folder_falls_back_with_a_note(demo_root, tmp_path, notes):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    ref = build(demo_root, tmp_path / "ref", tmp_path / "c", "DATALOADER.FEATURE_CACHE.EVAL", False).test()
    t = build(demo_root, tmp_path / "o", blocker / "cache")
    assert t.test() == ref
    note = [ln for ln in notes if "feature cache is not writable" in ln]
    assert len(note) == 1 and "DATALOADER.FEATURE_CACHE.DIR" in note[0] and "\n" not in note[0]
    assert blocker.read_text() == "a file where the cache folder would go"
    t.test()  # the run goes on from memory, without a second note
    assert len([ln for ln in notes if "feature cache is not writable" in ln]) == 1


# ---- training views ----------------------------------------------------------------------------
def test_training_views_are_seeded_and_shared(tmp_path):
    items = Items.make(str(tmp_path / "img"))
    cpu = torch.device("cpu")
    def views(folder, k):
        return cached_views(FeatureStore(str(tmp_path / folder), {"v": 1}), items, Items.transform, Items.encode, k,
                            cpu, 4)

    a, _, enc = views("a", 3)
    assert enc == 3 * len(items) and a.shape == (len(items), 3, 16)
    assert not torch.equal(a[:, 0], a[:, 1])  # views differ
    b, _, _ = views("b", 2)
    torch.testing.assert_close(b, a[:, :2])  # recomputed anywhere: the same views
    c, hits, enc = views("a", 4)
    assert (hits, enc) == (3 * len(items), len(items))  # K=4 reuses the 3 views of K=3


def test_training_views_are_the_same_wherever_and_whenever_the_images_were_written(tmp_path):
    """Another machine renders the world into another folder at another time: its views (and so
    every cached-view run) must be the ones documented here. An image with other bytes gets others."""
    import shutil
    items = Items.make(str(tmp_path / "here"))
    moved = []
    for d in items:
        dst = str(tmp_path / "there" / "sub" / os.path.basename(d.impath))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(d.impath, dst)               # a new file: another path, another mtime
        os.utime(dst, ns=(1_000_000_000, 1_000_000_000))
        moved.append(Datum(dst, d.label))
    cpu = torch.device("cpu")
    def views(folder, its):
        return cached_views(FeatureStore(str(tmp_path / folder), {"v": 1}), its, Items.transform, Items.encode, 3,
                            cpu, 4)[0]

    a, b = views("a", items), views("b", moved)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    from PIL import Image
    Image.new("RGB", (8, 8), (1, 2, 3)).save(moved[0].impath)
    c = views("c", moved)
    assert not torch.equal(c[0], a[0]) and torch.equal(c[1:], a[1:])


def test_view_choice_depends_on_seed_and_epoch_only(tmp_path):
    feats = torch.randn(10, 4, 3)

    class L:
        batch_sampler = [[0, 1, 2], [3, 4]]
        dataset = None

    x, y = (CachedFeatureLoader(L, feats, list(range(10)), seed=1) for _ in range(2))
    assert torch.equal(x.views_of_epoch(3), y.views_of_epoch(3))
    assert not torch.equal(x.views_of_epoch(3), x.views_of_epoch(4))
    x.set_epoch(2)
    batch = next(iter(x))
    assert torch.equal(batch["feat"], feats[torch.arange(3), x.views_of_epoch(2)[0, :3]])
    assert len(x) == 2


def test_each_pass_of_a_repeated_epoch_draws_its_own_view():
    """DATALOADER.TRAIN_X.REPEAT 2: an image seen twice in an epoch gets the view of its pass."""
    from e2mim_engine.data.data_manager import RepeatedBatchSampler
    feats = torch.randn(4, 8, 3)

    class L:
        batch_sampler = RepeatedBatchSampler([[0, 1], [2, 3]], 2)
        dataset = None

    x = CachedFeatureLoader(L, feats, list(range(4)), seed=1)
    x.set_epoch(1)
    got = torch.cat([b["feat"] for b in x])
    views = x.views_of_epoch(1, 2)
    want = torch.cat([feats[torch.arange(4), views[0]], feats[torch.arange(4), views[1]]])
    assert torch.equal(got, want) and len(x) == 4
    assert not torch.equal(views[0], views[1])   # 8 views: the two passes differ (fixed seed)


class Killed(Exception):
    pass


def test_resume_with_training_views_equals_uninterrupted(demo_root, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    views = ("DATALOADER.FEATURE_CACHE.TRAIN_VIEWS", 3, "OPTIM.MAX_EPOCH", 3)
    ref = build(demo_root, tmp_path / "ref", cache, *views)
    ref.train()
    assert isinstance(ref.train_loader_x, CachedFeatureLoader)
    n = len(ref.dm.dataset.train_x)
    assert (ref.feature_cache_stats["train_hits"], ref.feature_cache_stats["train_encoded"]) == (0, 3 * n)
    real = TrainerBase.run_epoch

    def dies_in_epoch_3(self):
        if self.epoch == 2:
            raise Killed()
        return real(self)

    monkeypatch.setattr(TrainerBase, "run_epoch", dies_in_epoch_3)
    with pytest.raises(Killed):
        build(demo_root, tmp_path / "run", cache, *views).train()
    monkeypatch.setattr(TrainerBase, "run_epoch", real)
    again = build(demo_root, tmp_path / "run", cache, *views)
    again.train()
    assert again.start_epoch == 2
    assert again.feature_cache_stats["train_encoded"] == 0 and again.feature_cache_stats["train_hits"] == 3 * n
    assert torch.equal(again.model.prompt_learner.ctx, ref.model.prompt_learner.ctx)
    # and it trains differently from the per-step augmentation of the published protocol
    plain = build(demo_root, tmp_path / "plain", cache, "OPTIM.MAX_EPOCH", 3)
    plain.train()
    assert not torch.equal(plain.model.prompt_learner.ctx, ref.model.prompt_learner.ctx)


def test_training_views_are_part_of_the_identity_and_refused_where_the_image_side_is_prompted(demo_root, tmp_path):
    plain = make_cfg(*demo_args(demo_root, str(tmp_path / "a")))
    off = make_cfg(*demo_args(demo_root, str(tmp_path / "a"), "DATALOADER.FEATURE_CACHE.TRAIN_VIEWS", 0,
                              "DATALOADER.FEATURE_CACHE.EVAL", False, "DATALOADER.FEATURE_CACHE.DIR", "/x"))
    on = make_cfg(*demo_args(demo_root, str(tmp_path / "a"), "DATALOADER.FEATURE_CACHE.TRAIN_VIEWS", 4))
    assert run_identity(plain) == run_identity(off)
    assert run_identity(plain)["config_hash"] != run_identity(on)["config_hash"]
    for trainer in ("IVLP", "E2MIM"):
        with pytest.raises(ConfigError, match="TRAIN_VIEWS"):
            build(demo_root, tmp_path / trainer, tmp_path / "c", "DATALOADER.FEATURE_CACHE.TRAIN_VIEWS", 2,
                  trainer=trainer)
    with pytest.raises(ConfigError, match="TRAIN_VIEWS must be an integer"):
        build(demo_root, tmp_path / "neg", tmp_path / "c", "DATALOADER.FEATURE_CACHE.TRAIN_VIEWS", -1)


# ---- e2mim-cache -------------------------------------------------------------------------------
def test_cache_command_reports_and_clears(tmp_path, capsys):
    items = Items.make(str(tmp_path / "img"))
    for name in ("one", "two"):
        store = FeatureStore(str(tmp_path / "c"), {"backbone": name, "precision": "fp32", "transform": "T"})
        cached_features(store, items, Items.transform, Items.encode, torch.device("cpu"), 4)
    assert cache_cli.main(["info", "--dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "2 store(s)" in out and f"{len(items)} entries in 1 shard(s)" in out and "one fp32" in out
    sid = list_stores(str(tmp_path / "c"))[0]["id"]
    assert cache_cli.main(["clear", "--dir", str(tmp_path / "c"), "nope"]) == 2
    assert cache_cli.main(["clear", "--dir", str(tmp_path / "c"), sid]) == 0
    assert [s["id"] for s in list_stores(str(tmp_path / "c"))] != [sid]
    assert len(list_stores(str(tmp_path / "c"))) == 1
    r = subprocess.run([sys.executable, "-m", "e2mim_tools.cache", "clear"], capture_output=True, text=True,
                       env=dict(os.environ, E2MIM_FEATURE_CACHE=str(tmp_path / "c")))
    assert r.returncode == 0 and "Removed 1 store(s)" in r.stdout
    assert list_stores(str(tmp_path / "c")) == []


def test_image_key_follows_size_and_time(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"abc")
    k = image_key(str(p))
    assert image_key(str(p)) == k
    p.write_bytes(b"abcd")
    assert image_key(str(p)) != k
