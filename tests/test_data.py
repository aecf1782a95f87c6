"""Split, few-shot and base/new rules against hand-worked examples; Caltech101's layout."""
import json
import os
import random

import pytest
from PIL import Image

import dataset_fixtures as F
from conftest import make_cfg
from e2mim_engine.data import (Datum, build_dataset, generate_fewshot_dataset, read_split, save_split,
                               subsample_classes)
from e2mim_engine.data.data_manager import read_image
from e2mim_engine.errors import DataError


def items(labels):
    return [Datum(f"/img/{i}.jpg", y, classname=f"c{y}") for i, y in enumerate(labels)]


def dassl_fewshot(data, k, seed):
    """CoOp's draw, as Dassl makes it: the global random module after random.seed(SEED)."""
    random.seed(seed)
    return F.dassl_fewshot(data, k)


def test_fewshot_equals_coop_draw_and_order_of_first_appearance():
    data = items([2, 0, 2, 1, 0, 2, 1, 0, 2, 0])
    for seed in (1, 2, 3):
        got = generate_fewshot_dataset(data, num_shots=2, rng=random.Random(seed))
        assert got == dassl_fewshot(data, 2, seed)
        # labels in order of first appearance: 2, 0, 1
        assert [d.label for d in got] == [2, 2, 0, 0, 1, 1]
    a = generate_fewshot_dataset(data, num_shots=2, rng=random.Random(1))
    b = generate_fewshot_dataset(data, num_shots=2, rng=random.Random(2))
    assert a != b


def test_fewshot_takes_all_items_when_fewer_than_k():
    data = items([0, 0, 1])
    got = generate_fewshot_dataset(data, num_shots=5, rng=random.Random(0))
    assert got == data
    assert generate_fewshot_dataset(data, num_shots=-1) is data


def test_base_new_halves_and_relabelling():
    train = items([4, 0, 1, 2, 3, 4, 2])
    test = items([0, 1, 2, 3, 4])
    base_train, base_test = subsample_classes(train, test, subsample="base")
    new_train, new_test = subsample_classes(train, test, subsample="new")
    # 5 labels: ceil(5/2)=3 base (0,1,2), new 3->0, 4->1
    assert [(d.label, d.classname) for d in base_test] == [(0, "c0"), (1, "c1"), (2, "c2")]
    assert [(d.label, d.classname) for d in new_test] == [(0, "c3"), (1, "c4")]
    assert [d.label for d in new_train] == [1, 0, 1]
    assert [d.label for d in base_train] == [0, 1, 2, 2]
    with pytest.raises(DataError, match="all, base or new"):
        subsample_classes(train, subsample="old")


def test_split_file_round_trip_and_format(tmp_path):
    prefix = str(tmp_path / "imgs")
    tr = [Datum(os.path.join(prefix, "a", "1.jpg"), 0, classname="a")]
    va = [Datum(os.path.join(prefix, "b", "2.jpg"), 1, classname="b")]
    te = [Datum(os.path.join(prefix, "a", "3.jpg"), 0, classname="a")]
    path = str(tmp_path / "split.json")
    save_split(tr, va, te, path, prefix)
    text = open(path).read()
    assert text == ('{\n    "train": [\n        [\n            "a/1.jpg",\n            0,\n            "a"\n'
                    '        ]\n    ],\n    "val": [\n        [\n            "b/2.jpg",\n            1,\n'
                    '            "b"\n        ]\n    ],\n    "test": [\n        [\n            "a/3.jpg",\n'
                    '            0,\n            "a"\n        ]\n    ]\n}')
    assert read_split(path, prefix) == (tr, va, te)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json"):
        read_split(str(tmp_path / "broken.json"), prefix)


def make_caltech(root, with_split):
    """caltech-101/101_ObjectCategories in miniature, with the ignored and renamed folders."""
    base = os.path.join(root, "caltech-101", "101_ObjectCategories")
    classes = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "airplanes", "anchor"]
    for c in classes:
        os.makedirs(os.path.join(base, c))
        for i in range(10):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(os.path.join(base, c, f"image_{i:04d}.jpg"))
    if with_split:
        split = {"train": [["anchor/image_0000.jpg", 3, "anchor"], ["Faces/image_0001.jpg", 0, "face"],
                           ["anchor/image_0002.jpg", 3, "anchor"], ["Leopards/image_0003.jpg", 1, "leopard"],
                           ["airplanes/image_0004.jpg", 2, "airplane"]],
                 "val": [["anchor/image_0005.jpg", 3, "anchor"]],
                 "test": [["Faces/image_0006.jpg", 0, "face"], ["airplanes/image_0007.jpg", 2, "airplane"]]}
        with open(os.path.join(root, "caltech-101", "split_zhou_Caltech101.json"), "w") as f:
            json.dump(split, f)
    return base


def test_caltech101_reads_split_file_as_is(tmp_path):
    make_caltech(str(tmp_path), with_split=True)
    ds = build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "Caltech101"))
    assert ds.classnames == ["face", "leopard", "airplane", "anchor"]
    assert [d.label for d in ds.train_x] == [3, 0, 3, 1, 2]  # file order kept
    assert len(ds.val) == 1 and len(ds.test) == 2 and ds.num_classes == 4


def test_caltech101_without_split_makes_coop_split(tmp_path):
    make_caltech(str(tmp_path), with_split=False)
    ds = build_dataset(make_cfg("--root", tmp_path, "--seed", 1, "DATASET.NAME", "Caltech101", "DATASET.NUM_SHOTS", 2))
    # ignored folders skipped, renames applied, classes in sorted (case-sensitive) order
    assert ds.classnames == ["face", "leopard", "airplane", "anchor"]
    split = json.load(open(tmp_path / "caltech-101" / "split_zhou_Caltech101.json"))
    assert [len(split[k]) for k in ("train", "val", "test")] == [4 * 5, 4 * 2, 4 * 3]
    assert {c for _, _, c in split["train"]} == {"face", "leopard", "airplane", "anchor"}
    # few-shot: 2 per class in train, min(2, 4)=2 in val, cached as portable JSON
    assert len(ds.train_x) == 8 and len(ds.val) == 8
    cache = tmp_path / "caltech-101" / "split_fewshot" / "shot_2-seed_1.json"
    assert cache.exists()
    again = build_dataset(make_cfg("--root", tmp_path, "--seed", 1, "DATASET.NAME", "Caltech101", "DATASET.NUM_SHOTS", 2))
    assert again.train_x == ds.train_x and again.val == ds.val
    other = build_dataset(make_cfg("--root", tmp_path, "--seed", 2, "DATASET.NAME", "Caltech101", "DATASET.NUM_SHOTS", 2))
    assert other.train_x != ds.train_x
    # the draw equals CoOp's for the same split file and seed
    full_train = read_split(str(tmp_path / "caltech-101" / "split_zhou_Caltech101.json"),
                            str(tmp_path / "caltech-101" / "101_ObjectCategories"))[0]
    assert ds.train_x == dassl_fewshot(full_train, 2, 1)
    base = build_dataset(make_cfg("--root", tmp_path, "--seed", 1, "DATASET.NAME", "Caltech101",
                                  "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert base.classnames == ["airplane", "anchor"] and len(base.train_x) == 4 and len(base.test) == 6


def test_coop_pickle_in_fewshot_folder_is_ignored(tmp_path):
    make_caltech(str(tmp_path), with_split=True)
    d = tmp_path / "caltech-101" / "split_fewshot"
    d.mkdir()
    (d / "shot_1-seed_1.pkl").write_bytes(b"\x80\x04not a pickle we can read without dassl")
    ds = build_dataset(make_cfg("--root", tmp_path, "--seed", 1, "DATASET.NAME", "Caltech101", "DATASET.NUM_SHOTS", 1))
    assert len(ds.train_x) == 4


def test_missing_root_and_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        build_dataset(make_cfg("--root", tmp_path / "nope", "DATASET.NAME", "Caltech101"))
    with pytest.raises(DataError) as e:
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "Caltech101"))
    assert str(tmp_path / "caltech-101") in str(e.value) and "split_zhou_Caltech101.json" in str(e.value)


def test_split_pointing_to_missing_images(tmp_path):
    base = make_caltech(str(tmp_path), with_split=True)
    os.remove(os.path.join(base, "anchor", "image_0002.jpg"))
    with pytest.raises(DataError, match="anchor/image_0002.jpg"):
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "Caltech101"))


def test_corrupt_image_names_the_file(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        read_image(str(p))
    with pytest.raises(DataError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


# ---- Dassl's "randaugment" and K_TRANSFORMS (CoPrompt's two augmented views) -------------------
def _noise_image(seed=0, size=32):
    import numpy as np
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (size, size, 3), dtype="uint8"))


def _apply_op(monkeypatch, index, flip_draw, m=10):
    """Our RandAugment with its one draw forced to operation ``index`` and direction draws
    ``flip_draw`` (> 0.5: negative magnitude), on the noise image."""
    from e2mim_engine.data import transforms as T
    monkeypatch.setattr(random, "choices", lambda ops, k: [ops[index]] * k)
    monkeypatch.setattr(random, "random", lambda: flip_draw)
    return T.RandAugment(1, m)(_noise_image())


def test_randaugment_operations_and_magnitudes_by_hand(monkeypatch):
    """Dassl's list, in its order (the drawn index picks the op), at m = 10 of 30."""
    import numpy as np
    from PIL import ImageEnhance, ImageOps
    img = _noise_image()
    same = lambda a, b: np.array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
    assert same(_apply_op(monkeypatch, 0, 0.0), ImageOps.autocontrast(img))
    assert same(_apply_op(monkeypatch, 2, 0.0), ImageOps.invert(img))
    assert same(_apply_op(monkeypatch, 3, 0.9), img.rotate(-10.0))          # 10/30 * 30, flipped
    assert same(_apply_op(monkeypatch, 3, 0.1), img.rotate(10.0))
    assert same(_apply_op(monkeypatch, 4, 0.0), ImageOps.posterize(img, 5))  # int(4 + 4/3)
    assert same(_apply_op(monkeypatch, 5, 0.0), ImageOps.solarize(img, 256 / 3))
    added = np.clip(np.asarray(img).astype(float) + 110 / 3, 0, 255).astype("uint8")
    assert same(_apply_op(monkeypatch, 6, 0.0), ImageOps.solarize(Image.fromarray(added), 128))
    assert same(_apply_op(monkeypatch, 8, 0.0), ImageEnhance.Contrast(img).enhance(0.1 + 1.8 / 3))
    assert same(_apply_op(monkeypatch, 11, 0.9), img.transform(img.size, Image.AFFINE, (1, -0.1, 0, 0, 1, 0)))
    assert same(_apply_op(monkeypatch, 15, 0.1), img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, 100 / 3)))
    # the cutout box: corner from numpy's uniform(w) (between 1 and w) minus v/2, v = 40/3 at m = 10
    np.random.seed(3)
    u = np.random.uniform(32), np.random.uniform(32)
    np.random.seed(3)
    out = np.asarray(_apply_op(monkeypatch, 13, 0.0)).copy()
    x0, y0 = int(max(0, u[0] - 20 / 3)), int(max(0, u[1] - 20 / 3))
    assert (out[y0, x0] == (125, 123, 114)).all() and (out[y0 + 13, x0 + 13] == (125, 123, 114)).all()
    out[y0:y0 + 14, x0:x0 + 14] = np.asarray(img)[y0:y0 + 14, x0:x0 + 14]
    assert same(out, img)


def test_randaugment_draws_n_ops_with_replacement_from_the_global_generator():
    from e2mim_engine.data.transforms import RANDAUGMENT_OPS, RandAugment
    assert len(RANDAUGMENT_OPS) == 16
    random.seed(7)
    picked = random.choices(range(16), k=2)
    random.seed(7)
    expected = _noise_image()
    for i in picked:
        op, low, high = RANDAUGMENT_OPS[i]
        expected = op(expected, 10 / 30 * (high - low) + low)
    random.seed(7)
    import numpy as np
    assert np.array_equal(np.asarray(RandAugment(2, 10)(_noise_image())), np.asarray(expected))
    with pytest.raises(Exception, match="RANDAUGMENT_M"):
        RandAugment(2, 31)


def test_k_transforms_gives_a_list_of_independent_views(demo_root):
    import torch
    from e2mim_engine.data.data_manager import DataManager
    from conftest import DEMO_CFG, TINY_CFG
    args = ("--root", demo_root, "--seed", 1, "--dataset-config-file", DEMO_CFG, "--config-file", TINY_CFG,
            "DATASET.NUM_SHOTS", 2, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
            "DATALOADER.K_TRANSFORMS", 2, "VERBOSE", False, "INPUT.SIZE", "(32, 32)")
    random.seed(0)
    batch = next(iter(DataManager(make_cfg(*args, "INPUT.TRANSFORMS", "['randaugment', 'normalize']")).train_loader_x))
    assert isinstance(batch["img"], list) and len(batch["img"]) == 2
    a, b = batch["img"]
    assert a.shape == b.shape and a.shape[1:] == (3, 32, 32)
    assert not torch.equal(a, b)  # two draws of RandAugment
    plain = DataManager(make_cfg(*args, "INPUT.TRANSFORMS", "['normalize']"))
    a, b = next(iter(plain.train_loader_x))["img"]
    assert torch.equal(a, b)      # nothing random: the same view twice
    assert torch.is_tensor(next(iter(plain.test_loader))["img"])  # evaluation: one view


def test_k_transforms_beyond_what_the_method_reads_is_refused(demo_root, tmp_path):
    from conftest import demo_args
    from e2mim_engine.errors import ConfigError
    from e2mim_engine.trainer import build_trainer
    with pytest.raises(ConfigError, match="K_TRANSFORMS must be an integer from 1 to 1 for CoOp.*reads one"):
        build_trainer(make_cfg(*demo_args(demo_root, str(tmp_path), "DATALOADER.K_TRANSFORMS", 2)))
