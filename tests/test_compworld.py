"""CompWorld as a registered dataset: base/new halves are disjoint compositions of attribute
values that are all seen in pretraining. (Pretraining itself is too slow for the suite; its
smoke path is in test_compworld_render.py.)"""
import collections
import os

import pytest

from conftest import make_cfg
from e2mim_datasets.compworld import render as cw
from e2mim_datasets.compworld import IMAGES_PER_CLASS, world_classes
from e2mim_engine.data import build_dataset
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
