"""The dataset zoo on miniature copies of the 15 layouts (tests/dataset_fixtures.py): class
names, split sizes, split files (read as is / made as CoOp does), few-shot draws and their
cache, base/new halves, ImageNet's cached index, the custom ImageFolder dataset, the layout
checker, and the errors for bad input."""
import json
import math
import os
import pickle
import random
import runpy
import shutil
import sys
from collections import OrderedDict

import pytest

import dataset_fixtures as F
from conftest import ROOT, TINY_CFG, make_cfg
from e2mim_engine.data import DATASET_REGISTRY, Datum, build_dataset, split_trainval
from e2mim_engine.data.data_manager import DataManager
from e2mim_engine.data import folders as data_folders
from e2mim_engine.data.data_manager import read_image
from e2mim_tools.check_datasets import check_root, exit_code, format_report
from e2mim_tools.check_datasets import main as check_main
from e2mim_engine.errors import ConfigError, DataError

CFG_DIR = os.path.join(ROOT, "configs", "datasets")
ALL = list(F.WRITERS)
FEWSHOT = [n for n in ALL if n not in ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")]
TEST_ONLY = [n for n in ALL if n not in FEWSHOT]
REGENERABLE = [n for n in FEWSHOT if n not in ("ImageNet", "FGVCAircraft")]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    return str(root), F.make_all(str(root))


def load(root, name, *opts, seed=1):
    return build_dataset(make_cfg("--root", root, "--seed", seed, "--dataset-config-file",
                                  os.path.join(CFG_DIR, F.YAML[name]), *opts))


def sizes(d):
    return len(d.train_x), (len(d.val) if d.val else None), len(d.test)


def per_class(items):
    out = OrderedDict()
    for d in items:
        out[d.label] = out.get(d.label, 0) + 1
    return out


def coop_draw(train, val, k, seed, draw_val=True):
    state = random.getstate()
    try:
        random.seed(seed)   # CoOp's train.py: set_random_seed(cfg.SEED) before building the dataset
        tr = F.dassl_fewshot(train, k)
        va = F.dassl_fewshot(val, min(k, 4)) if draw_val else val
        return tr, va
    finally:
        random.setstate(state)


# ---- configs -------------------------------------------------------------------------------
def test_every_dataset_has_coop_yaml():
    for name, yaml in F.YAML.items():
        cfg = make_cfg("--dataset-config-file", os.path.join(CFG_DIR, yaml))
        assert cfg.DATASET.NAME == name and name in DATASET_REGISTRY


# ---- loading -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_loads_class_names_and_split_sizes(zoo, name):
    root, specs = zoo
    spec = specs[name]
    d = load(root, name)
    assert d.classnames == spec.classnames
    assert d.num_classes == len(spec.classnames)
    assert sizes(d) == spec.sizes
    assert all(os.path.isfile(x.impath) for x in d.train_x + d.test)
    assert all(d.lab2cname[x.label] == x.classname for x in d.test)


@pytest.mark.parametrize("name", FEWSHOT)
def test_few_shot_counts_cache_and_coop_draw(zoo, name):
    root, specs = zoo
    spec = specs[name]
    full = load(root, name, "DATASET.NUM_SHOTS", -1)
    k = 2
    d = load(root, name, "DATASET.NUM_SHOTS", k, seed=1)
    assert set(per_class(d.train_x).values()) == {min(k, spec.train_per_class)}
    assert len(per_class(d.train_x)) == len(spec.classnames)
    is_imagenet = name == "ImageNet"
    if is_imagenet:   # CoOp draws only train for ImageNet; val stays the full val/test set
        assert d.val == full.val == d.test
    else:
        assert set(per_class(d.val).values()) == {min(k, 4, spec.val_per_class)}
    tr, va = coop_draw(full.train_x, full.val, k, 1, draw_val=not is_imagenet)
    assert [x.impath for x in d.train_x] == [x.impath for x in tr]
    assert [x.impath for x in d.val] == [x.impath for x in va]
    cache = os.path.join(root, spec.folder, "split_fewshot", f"shot_{k}-seed_1.json")
    assert os.path.isfile(cache)
    with open(cache) as f:
        cached = json.load(f)
    assert all(not os.path.isabs(p) for p, _, _ in cached["train"])   # portable: relative paths
    again = load(root, name, "DATASET.NUM_SHOTS", k, seed=1)
    assert again.train_x == d.train_x and again.val == d.val
    other = load(root, name, "DATASET.NUM_SHOTS", k, seed=2)
    assert [x.impath for x in other.train_x] != [x.impath for x in d.train_x]
    assert set(per_class(other.train_x).values()) == {k}
    big = load(root, name, "DATASET.NUM_SHOTS", 100, seed=1)   # fewer than K: all items
    assert len(big.train_x) == len(full.train_x)


@pytest.mark.parametrize("name", FEWSHOT)
def test_base_new_halves(zoo, name):
    root, specs = zoo
    names = specs[name].classnames
    m = math.ceil(len(names) / 2)
    shot = load(root, name, "DATASET.NUM_SHOTS", 4, seed=3)
    for part, expected in (("base", names[:m]), ("new", names[m:])):
        d = load(root, name, "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", part, seed=3)
        assert d.classnames == expected
        assert sorted({x.label for x in d.test}) == list(range(len(expected)))
        assert {x.classname for x in d.train_x} == {x.classname for x in d.val} == set(expected)
        # few-shot drawn before subsampling: the base items are the all-class draw's base items
        lo = 0 if part == "base" else m
        assert [x.impath for x in d.train_x] == [x.impath for x in shot.train_x if lo <= x.label < lo + len(expected)]


@pytest.mark.parametrize("name", REGENERABLE)
def test_missing_split_file_is_made_as_coop_does_and_saved(tmp_path, name):
    roots = [tmp_path / "a", tmp_path / "b"]
    made = []
    for r in roots:
        spec = F.WRITERS[name](str(r), split=False)
        split_path = os.path.join(str(r), spec.folder, spec.split_file)
        assert not os.path.exists(split_path)
        d = load(str(r), name)
        assert sizes(d) == spec.gen_sizes
        assert d.classnames == spec.gen_classnames
        assert os.path.isfile(split_path)
        with open(split_path) as f:
            made.append(json.load(f))
        again = load(str(r), name)   # now read from the file
        assert again.train_x == d.train_x and again.val == d.val and again.test == d.test
    assert made[0] == made[1]   # sorted listing + fixed seed: the same split on every disk


@pytest.mark.parametrize("name", TEST_ONLY)
def test_test_only_variants(zoo, name):
    root, specs = zoo
    d = load(root, name, "DATASET.NUM_SHOTS", 1, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert d.val is None and d.train_x == d.test and sizes(d) == specs[name].sizes
    assert d.classnames == specs[name].classnames


def test_variant_without_classnames_says_where_to_put_it(tmp_path):
    F.make_imagenet_a(str(tmp_path))
    os.remove(tmp_path / "imagenet-adversarial" / "classnames.txt")
    with pytest.raises(DataError) as e:
        load(str(tmp_path), "ImageNetA")
    msg = str(e.value)
    assert str(tmp_path / "imagenet-adversarial" / "classnames.txt") in msg
    assert str(tmp_path / "imagenet" / "classnames.txt") in msg and "DATASETS.md" in msg


def test_split_trainval_is_coops_rule():
    items = [Datum(f"/x/{i}.jpg", i % 3, classname=str(i % 3)) for i in range(30)]
    state = random.getstate()
    random.seed(5)
    tracker = OrderedDict()   # CoOp's OxfordPets.split_trainval on the global random module
    for idx, it in enumerate(items):
        tracker.setdefault(it.label, []).append(idx)
    ref_tr, ref_va = [], []
    for _, idxs in tracker.items():
        n_val = round(len(idxs) * 0.2)
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (ref_va if n < n_val else ref_tr).append(items[idx])
    random.setstate(state)
    tr, va = split_trainval(items, 0.2, rng=random.Random(5))
    assert tr == ref_tr and va == ref_va


# ---- ImageNet --------------------------------------------------------------------------------
def test_imagenet_index_is_cached_and_revalidated(tmp_path, monkeypatch):
    root = str(tmp_path)
    F.make_imagenet(root)
    index = os.path.join(root, "imagenet", "images_index.json")
    first = load(root, "ImageNet")
    assert os.path.isfile(index)
    with open(index) as f:
        data = json.load(f)
    assert data["format"] == "e2mim-folder-index" and "/" not in json.dumps(data["splits"]["train"]["files"])

    def no_listing(*a, **k):
        raise AssertionError("the cached index must not list the image folders again")

    monkeypatch.setattr(data_folders, "list_files", no_listing)
    second = load(root, "ImageNet")
    assert second.train_x == first.train_x and second.test == first.test
    monkeypatch.undo()
    wnid = F.IMAGENET[2][0]
    F.write_image(os.path.join(root, "imagenet", "images", "train", wnid, "added.JPEG"))
    st = os.stat(os.path.join(root, "imagenet", "images", "train", wnid))
    os.utime(os.path.join(root, "imagenet", "images", "train", wnid), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load(root, "ImageNet")
    assert len(third.train_x) == len(first.train_x) + 1
    assert any(x.impath.endswith("added.JPEG") and x.label == 2 for x in third.train_x)


def _coop_pickle(path):
    """A few-shot pickle as CoOp writes it: it references Dassl's Datum, which is not installed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = (b"\x80\x04\x95\x30\x00\x00\x00\x00\x00\x00\x00\x8c\x1cdassl.data.datasets.base\x94\x8c\x05"
               b"Datum\x94\x93\x94.")
    with open(path, "wb") as f:
        f.write(payload)
    with pytest.raises(Exception):
        with open(path, "rb") as f:
            pickle.load(f)   # unreadable without Dassl: our code must never try


@pytest.mark.parametrize("name", ["ImageNet", "OxfordPets"])
def test_coop_pickle_in_the_cache_dir_is_left_alone(tmp_path, name):
    root = str(tmp_path)
    spec = F.WRITERS[name](root)
    pkl = os.path.join(root, spec.folder, "split_fewshot", "shot_2-seed_1.pkl")
    _coop_pickle(pkl)
    d = load(root, name, "DATASET.NUM_SHOTS", 2)
    assert set(per_class(d.train_x).values()) == {2}
    assert os.path.isfile(pkl.replace(".pkl", ".json"))
    with open(pkl.replace(".pkl", ".json")) as f:
        assert ("val" in json.load(f)) is (name != "ImageNet")


# ---- custom ImageFolder by config ------------------------------------------------------------
def _custom_yaml(tmp_path, **custom):
    lines = ["DATASET:", '  NAME: "ImageFolder"', '  TEMPLATE: "a photo of a {}, a kind of widget."', "  CUSTOM:"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in custom.items()]
    p = tmp_path / "my_data.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def _folders(base, classes, n):
    for c in classes:
        for k in range(n):
            F.write_image(os.path.join(base, c, f"{k}.png" if k % 2 else f"{k}.jpg"))


def test_custom_split_layout_with_name_map_and_template(tmp_path):
    root = tmp_path / "data"
    ds = root / "widgets"
    _folders(str(ds / "train"), ["b_cog", "a_gear", "c_spring"], 6)
    _folders(str(ds / "val"), ["b_cog", "a_gear", "c_spring"], 2)
    _folders(str(ds / "test"), ["b_cog", "a_gear", "c_spring"], 3)
    (ds / "train" / "a_gear" / "notes.txt").write_text("not an image")
    (ds / "names.json").write_text(json.dumps({"a_gear": "spur gear", "c_spring": "coil spring"}))
    yaml = _custom_yaml(tmp_path, DIR="widgets", CLASSNAMES="names.json")
    cfg = make_cfg("--root", root, "--seed", 1, "--dataset-config-file", yaml)
    d = build_dataset(cfg)
    assert d.classnames == ["spur gear", "b_cog", "coil spring"]   # sorted folders, names mapped
    assert sizes(d) == (18, 6, 9)
    assert not os.path.exists(ds / "split_custom.json")   # nothing drawn: nothing saved
    from e2mim_clip.templates import dataset_template
    assert dataset_template(cfg, d) == "a photo of a {}, a kind of widget."
    shot = build_dataset(make_cfg("--root", root, "--seed", 1, "--dataset-config-file", yaml,
                                  "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert shot.classnames == ["coil spring"] and len(shot.train_x) == 2
    dm = DataManager(make_cfg("--root", root, "--seed", 1, "--dataset-config-file", yaml, "--config-file", TINY_CFG,
                              "VERBOSE", False, "DATALOADER.NUM_WORKERS", 0))
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape[1:] == (3, 224, 224)


def test_custom_train_test_only_draws_val_and_saves_split(tmp_path):
    _folders(str(tmp_path / "w" / "train"), ["x", "y"], 10)
    _folders(str(tmp_path / "w" / "test"), ["x", "y"], 2)
    yaml = _custom_yaml(tmp_path, DIR="w", P_VAL=0.2)
    d = build_dataset(make_cfg("--root", tmp_path, "--dataset-config-file", yaml))
    assert sizes(d) == (16, 4, 4)
    assert os.path.isfile(tmp_path / "w" / "split_custom.json")
    again = build_dataset(make_cfg("--root", tmp_path, "--dataset-config-file", yaml))
    assert again.train_x == d.train_x and again.val == d.val


def test_custom_single_folder_absolute_dir_and_text_map(tmp_path):
    ds = tmp_path / "elsewhere" / "parts"
    _folders(str(ds / "images"), ["bolt", "nut", "washer"], 10)
    (tmp_path / "map.txt").write_text("bolt hex bolt\nnut lock nut\n")
    yaml = _custom_yaml(tmp_path, DIR=str(ds), LAYOUT="single", CLASSNAMES=str(tmp_path / "map.txt"))
    d = build_dataset(make_cfg("--dataset-config-file", yaml))   # no --root needed with an absolute DIR
    assert d.classnames == ["hex bolt", "lock nut", "washer"]
    assert sizes(d) == (15, 6, 9)   # per class 5 / 2 / 3
    assert os.path.isfile(ds / "split_custom.json")


def test_custom_example_config_loads(tmp_path):
    _folders(str(tmp_path / "my_dataset" / "images"), ["p", "q"], 10)
    d = build_dataset(make_cfg("--root", tmp_path, "--dataset-config-file",
                               os.path.join(CFG_DIR, "custom_example.yaml")))
    assert d.classnames == ["p", "q"]


def test_custom_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="DATASET.CUSTOM.DIR"):
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "ImageFolder"))
    with pytest.raises(ConfigError, match="LAYOUT"):
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "ImageFolder", "DATASET.CUSTOM.DIR", "w",
                               "DATASET.CUSTOM.LAYOUT", "flat"))
    _folders(str(tmp_path / "w" / "train"), ["x", "y"], 4)
    _folders(str(tmp_path / "w" / "val"), ["x", "y"], 2)
    os.makedirs(tmp_path / "w" / "train" / "z")
    with pytest.raises(DataError) as e:
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "ImageFolder", "DATASET.CUSTOM.DIR", "w"))
    assert os.path.join(str(tmp_path), "w", "train", "z") in str(e.value) and "no images" in str(e.value)
    os.rmdir(tmp_path / "w" / "train" / "z")
    _folders(str(tmp_path / "w" / "val"), ["stray"], 1)
    with pytest.raises(DataError, match="stray"):
        build_dataset(make_cfg("--root", tmp_path, "DATASET.NAME", "ImageFolder", "DATASET.CUSTOM.DIR", "w"))


# ---- layout checker --------------------------------------------------------------------------
def test_checker_reports_every_dataset(zoo):
    root, specs = zoo
    rows = {r["name"]: r for r in check_root(root)}
    assert set(specs) <= set(rows)
    for name, spec in specs.items():
        r = rows[name]
        assert r["status"] == "ok", (name, r)
        assert r["classes"] == len(spec.classnames)
        assert r["test"] == spec.sizes[2]
        if not spec.test_only:
            assert (r["train"], r["val"]) == spec.sizes[:2]
    report = format_report(list(rows.values()), root)
    assert "yes (split_zhou_OxfordPets.json)" in report and "test only" in report
    assert exit_code(list(rows.values())) == 0


def test_checker_says_what_is_missing_and_writes_nothing(tmp_path, capsys):
    root = str(tmp_path)
    F.make_oxford_pets(root, split=False)
    os.remove(os.path.join(root, "oxford_pets", "annotations", "test.txt"))
    F.make_dtd(root, split=False)
    F.make_imagenet(root)
    os.remove(os.path.join(root, "imagenet", "classnames.txt"))
    rows = {r["name"]: r for r in check_root(root)}
    assert rows["Caltech101"]["status"] == "missing"
    assert rows["Caltech101"]["problems"][0][0] == os.path.join(root, "caltech-101")
    pets = rows["OxfordPets"]
    assert pets["status"] == "incomplete"
    assert pets["problems"][0][0] == os.path.join(root, "oxford_pets", "split_zhou_OxfordPets.json")
    assert os.path.join(root, "oxford_pets", "annotations", "test.txt") in pets["problems"][0][1]
    assert rows["ImageNet"]["problems"][0][0] == os.path.join(root, "imagenet", "classnames.txt")
    assert rows["DescribableTextures"]["status"] == "ok"
    assert rows["DescribableTextures"]["split"].startswith("no: made on first use")
    assert not os.path.exists(os.path.join(root, "dtd", "split_zhou_DescribableTextures.json"))   # read-only
    rc = check_main(["--root", root, "--names", "OxfordPets", "DescribableTextures"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "expected " + os.path.join(root, "oxford_pets", "split_zhou_OxfordPets.json") in out
    assert "robots.ox.ac.uk/~vgg/data/pets" in out
    assert check_main(["--root", root, "--names", "DescribableTextures"]) == 0
    assert check_main(["--root", os.path.join(root, "nope")]) == 2


def test_checker_hints_at_misnamed_or_nested_folders(tmp_path):
    root = str(tmp_path)
    F.make_dtd(os.path.join(root, "DTD"))   # -> DTD/dtd/...: wrong case
    rows = check_root(root, names=["DescribableTextures"])
    assert rows[0]["status"] == "missing"
    assert "rename it to 'dtd'" in format_report(rows, root)
    F.make_fgvc_aircraft(os.path.join(root, "fgvc_aircraft", "data"))   # the archive's data/ kept
    os.rename(os.path.join(root, "fgvc_aircraft", "data", "fgvc_aircraft"), os.path.join(root, "x"))
    os.rmdir(os.path.join(root, "fgvc_aircraft", "data"))
    os.rename(os.path.join(root, "x"), os.path.join(root, "fgvc_aircraft", "data"))
    rows = check_root(root, names=["FGVCAircraft"])
    assert rows[0]["status"] == "incomplete"
    assert "one level too deep" in format_report(rows, root)


def test_checker_verify_images_names_corrupt_file(tmp_path, capsys):
    root = str(tmp_path)
    F.make_eurosat(root)
    bad = os.path.join(root, "eurosat", "2750", "Forest", "Forest_3.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8 truncated")
    assert check_main(["--root", root, "--names", "EuroSAT", "--verify-images"]) == 1
    assert bad in capsys.readouterr().out


def test_checker_custom_config_and_script(tmp_path, monkeypatch, capsys):
    _folders(str(tmp_path / "w" / "images"), ["x", "y"], 10)
    yaml = _custom_yaml(tmp_path, DIR="w")
    monkeypatch.setattr(sys, "argv", ["e2mim-check-datasets", "--root", str(tmp_path), "--dataset-config-file", yaml])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("e2mim_tools.check_datasets", run_name="__main__")
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    assert "ImageFolder" in out and " ok " in out
    assert not os.path.exists(tmp_path / "w" / "split_custom.json")


# ---- bad input: clear errors before training ---------------------------------------------------
def test_wrong_root(tmp_path):
    with pytest.raises(DataError, match="--root"):
        load(str(tmp_path / "missing"), "OxfordPets")
    with pytest.raises(DataError) as e:
        load(str(tmp_path), "OxfordPets")
    assert os.path.join(str(tmp_path), "oxford_pets") in str(e.value) and "robots.ox.ac.uk" in str(e.value)


def test_archive_extracted_one_level_too_deep(tmp_path):
    F.make_dtd(str(tmp_path / "dtd"))   # -> dtd/dtd/images
    with pytest.raises(DataError) as e:
        load(str(tmp_path), "DescribableTextures")
    assert "one level too deep" in str(e.value)
    assert os.path.join(str(tmp_path), "dtd", "dtd", "images") in str(e.value)


def test_half_extracted_imagenet(tmp_path):
    root = str(tmp_path)
    F.make_imagenet(root)
    gone = os.path.join(root, "imagenet", "images", "train", F.IMAGENET[3][0])
    shutil.rmtree(gone)
    with pytest.raises(DataError) as e:
        load(root, "ImageNet")
    assert gone in str(e.value) and "half-extracted" in str(e.value)
    os.makedirs(gone)
    with pytest.raises(DataError) as e:
        load(root, "ImageNet")
    assert gone in str(e.value) and "no images" in str(e.value)


def test_split_file_pointing_to_missing_images(tmp_path):
    root = str(tmp_path)
    F.make_food101(root)
    gone = os.path.join(root, "food-101", "images", "baklava", "3.jpg")
    os.remove(gone)
    with pytest.raises(DataError) as e:
        load(root, "Food101")
    assert gone in str(e.value) and "missing" in str(e.value)


def test_class_folder_without_images(tmp_path):
    root = str(tmp_path)
    F.make_dtd(root, split=False)
    shutil.rmtree(os.path.join(root, "dtd", "images", "bubbly"))
    os.makedirs(os.path.join(root, "dtd", "images", "bubbly"))
    with pytest.raises(DataError) as e:
        load(root, "DescribableTextures")
    assert os.path.join(root, "dtd", "images", "bubbly") in str(e.value)
    F.make_imagenet_r(root)
    empty = os.path.join(root, "imagenet-rendition", "imagenet-r", F.SUBSET[0])
    shutil.rmtree(empty)
    os.makedirs(empty)
    with pytest.raises(DataError, match="no images"):
        load(root, "ImageNetR")


def test_split_sources_missing_names_both(tmp_path):
    root = str(tmp_path)
    F.make_stanford_cars(root, split=False)
    os.remove(os.path.join(root, "stanford_cars", "devkit", "cars_meta.mat"))
    with pytest.raises(DataError) as e:
        load(root, "StanfordCars")
    assert "split_zhou_StanfordCars.json" in str(e.value)
    assert os.path.join(root, "stanford_cars", "devkit", "cars_meta.mat") in str(e.value)


def test_corrupt_and_missing_image_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=str(bad)):
        read_image(str(bad))
    with pytest.raises(DataError, match=str(tmp_path / "gone.jpg")):
        read_image(str(tmp_path / "gone.jpg"))


def test_train_py_stops_before_training_on_bad_data(tmp_path, capsys):
    from e2mim_engine.cli import main
    out = tmp_path / "out"
    rc = main(["--root", str(tmp_path), "--trainer", "CoOp", "--config-file", TINY_CFG, "--dataset-config-file",
               os.path.join(CFG_DIR, "oxford_pets.yaml"), "--output-dir", str(out), "DATALOADER.NUM_WORKERS", "0"])
    assert rc == 2
    cap = capsys.readouterr()
    assert os.path.join(str(tmp_path), "oxford_pets") in cap.err and "epoch [" not in cap.out
    # a run that stopped before training leaves no output folder behind (its log held only the error)
    assert not out.exists()
