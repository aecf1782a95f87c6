"""CompWorld as a registered dataset: base/new halves are disjoint compositions of attribute
values that are all seen in pretraining. (Pretraining itself is too slow for the suite; its
smoke path is in test_compworld_render.py.)"""
import collections
import json
import os

import pytest

from conftest import make_cfg
from e2mim_datasets.compworld import render as cw
from e2mim_datasets.compworld import IMAGES_PER_CLASS, world_classes
from e2mim_engine.data import build_dataset
from e2mim_engine.errors import DataError
from e2mim_clip.loader import LOCAL_BACKBONES


def test_world_halves_are_unseen_compositions_of_seen_values():
    base, new = world_classes()
    seen, unseen = cw.base_new_split(0)
    assert len(base) == len(new) == 24 and not set(base) & set(new)
    assert set(base) <= set(seen) and set(new) == set(unseen)
    for half in (base, new):
        assert set(collections.Counter(c for c, _ in half).values()) == {3}
        assert set(collections.Counter(s for _, s in half).values()) == {3}
    seen_colours, seen_shapes = {c for c, _ in seen}, {s for _, s in seen}
    assert all(c in seen_colours and s in seen_shapes for c, s in new)


@pytest.fixture(scope="module")
def world_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cw"))


def test_dataset_generates_and_splits_base_new(world_root):
    base, new = world_classes()
    full = build_dataset(make_cfg("--root", world_root, "--seed", 1, "DATASET.NAME", "CompWorld"))
    assert full.classnames == [cw.class_name(c) for c in base + new]
    per_class = collections.Counter(d.label for d in full.train_x)
    assert set(per_class.values()) == {IMAGES_PER_CLASS // 2}
    assert len(full.test) == 48 * (IMAGES_PER_CLASS - IMAGES_PER_CLASS // 2 - round(IMAGES_PER_CLASS * 0.2))
    b = build_dataset(make_cfg("--root", world_root, "--seed", 1, "DATASET.NAME", "CompWorld",
                               "DATASET.NUM_SHOTS", 16, "DATASET.SUBSAMPLE_CLASSES", "base"))
    n = build_dataset(make_cfg("--root", world_root, "--seed", 1, "DATASET.NAME", "CompWorld",
                               "DATASET.NUM_SHOTS", 16, "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert b.classnames == [cw.class_name(c) for c in base]
    assert n.classnames == [cw.class_name(c) for c in new]
    assert set(collections.Counter(d.label for d in b.train_x).values()) == {16}
    assert os.path.isfile(os.path.join(world_root, "compworld", "split_compworld.json"))


def test_pretrained_backbone_is_known_by_name():
    assert "compworld-tiny" in LOCAL_BACKBONES
    assert len(LOCAL_BACKBONES["compworld-tiny"].sha256) == 64


def test_bench_world_renders_its_camera_and_splits_50_20_30(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    import e2mim_datasets.compworld as world
    monkeypatch.setattr(world, "BENCH_IMAGES_PER_CLASS", 10)   # the same code path, fewer images
    b = build_dataset(make_cfg("--root", str(tmp_path), "--seed", 1, "DATASET.NAME", "CompWorldBench",
                               "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"))
    base, new = world.bench_classes()
    assert base == world_classes()[0] and b.classnames == [cw.class_name(c) for c in base]
    # new: the 16 other pairs seen in pretraining and the 8 unseen ones of one held-out level
    seen, unseen = cw.base_new_split(0)
    assert sum(c in seen for c in new) == 16 and sum(c in unseen for c in new) == 8
    assert not set(new) & set(base)
    for attr in (0, 1):   # every colour and every shape three times among the new classes
        assert set(collections.Counter(c[attr] for c in new).values()) == {3}
    n = build_dataset(make_cfg("--root", str(tmp_path), "--seed", 1, "DATASET.NAME", "CompWorldBench",
                               "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert n.classnames == [cw.class_name(c) for c in new]
    assert os.path.isfile(tmp_path / "compworld_bench" / "split_compworld_bench.json")
    full = build_dataset(make_cfg("--root", str(tmp_path), "--seed", 1, "DATASET.NAME", "CompWorldBench"))
    assert len(full.train_x) == 48 * 5 and len(full.val) == 48 * 2 and len(full.test) == 48 * 3
    # image 0 of the first base class is what the renderer draws through BENCH_DOMAIN's camera
    d = next(x for x in full.train_x + full.val + full.test if x.impath.endswith(os.path.join(
        cw.class_folder(base[0]), "0.png")))
    order = np.random.default_rng(np.random.SeedSequence([0, __import__("zlib").crc32(
        f"{base[0][0]}|{base[0][1]}".encode()), 0xF0])).permutation(8)
    nuis = [(s, bg) for s in cw.ATTRIBUTES["size"] for bg in cw.ATTRIBUTES["background"]][order[0]]
    want = cw.render(cw.Combo(base[0][0], base[0][1], *nuis), 0, 64, 0, world.BENCH_DOMAIN)
    assert np.array_equal(np.asarray(Image.open(d.impath)), np.asarray(want))
    assert world.BENCH_DOMAIN.hue_shift and world.BENCH_DOMAIN.class_hue and world.BENCH_DOMAIN.distractors
    # the folder records the world it holds; a folder of another world is refused, not mixed in
    with open(tmp_path / "compworld_bench" / world.WORLD_STAMP) as f:
        assert json.load(f) == dict(world.bench_stamp(), images_per_class=10)
    monkeypatch.setattr(world, "BENCH_IMAGES_PER_CLASS", 12)
    with pytest.raises(DataError, match="another version of the bench world.*Delete the folder"):
        build_dataset(make_cfg("--root", str(tmp_path), "--seed", 1, "DATASET.NAME", "CompWorldBench"))
    os.remove(tmp_path / "compworld_bench" / world.WORLD_STAMP)
    with pytest.raises(DataError, match="no world.json"):
        build_dataset(make_cfg("--root", str(tmp_path), "--seed", 1, "DATASET.NAME", "CompWorldBench"))


def test_val_shots_raises_the_validation_cap_without_changing_the_training_draw(tmp_path):
    args = ["--root", str(tmp_path), "--seed", 2, "DATASET.NAME", "CompWorld", "DATASET.NUM_SHOTS", 8,
            "DATASET.SUBSAMPLE_CLASSES", "base"]
    coop = build_dataset(make_cfg(*args))
    more = build_dataset(make_cfg(*args, "DATASET.VAL_SHOTS", 8))
    assert [d.impath for d in coop.train_x] == [d.impath for d in more.train_x]
    assert set(collections.Counter(d.label for d in coop.val).values()) == {4}   # CoOp's cap
    assert set(collections.Counter(d.label for d in more.val).values()) == {8}
    fs = tmp_path / "compworld" / "split_fewshot"
    assert sorted(os.listdir(fs)) == ["shot_8-seed_2-val_8.json", "shot_8-seed_2.json"]
    # beyond the training shots too (CompWorld keeps 8 validation images of each class: all of them),
    # and a cache file drawn under the old cap min(K, V) is drawn again, not read
    stale = fs / "shot_2-seed_2-val_60.json"
    build_dataset(make_cfg(*args, "DATASET.NUM_SHOTS", 2, "DATASET.VAL_SHOTS", 60))
    data = json.loads(stale.read_text())
    data["val"] = data["val"][::4]
    del data["k_val"]
    stale.write_text(json.dumps(data))
    most = build_dataset(make_cfg(*args, "DATASET.NUM_SHOTS", 2, "DATASET.VAL_SHOTS", 60))
    assert json.loads(stale.read_text())["k_val"] == 60
    assert [d.impath for d in most.train_x] == [d.impath for d in build_dataset(make_cfg(
        *args, "DATASET.NUM_SHOTS", 2)).train_x]
    assert set(collections.Counter(d.label for d in most.val).values()) == {8}
    two = build_dataset(make_cfg(*args, "DATASET.NUM_SHOTS", 2))
    assert set(collections.Counter(d.label for d in two.val).values()) == {2}   # CoOp: min(K, 4)
