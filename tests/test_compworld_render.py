"""Fast tests of the CompWorld renderer, split, captions, image folder and a 2-step pretraining."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from e2mim_datasets.compworld import render as cw  # noqa: E402


def _px(img):
    return np.asarray(img)


def test_module_does_not_import_torch():
    code = ("import sys; import e2mim_datasets.compworld.render; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_attributes_and_combinations():
    assert len(cw.ATTRIBUTES) >= 4
    n = 1
    for values in cw.ATTRIBUTES.values():
        assert len(values) == len(set(values)) >= 2
        n *= len(values)
    combos = cw.all_combinations()
    assert len(combos) == n >= 200
    assert len(set(combos)) == n
    assert len(cw.all_classes()) == len(cw.ATTRIBUTES["colour"]) * len(cw.ATTRIBUTES["shape"])
    # attribute words are single tokens without underscores, so folder names round-trip
    for values in cw.ATTRIBUTES.values():
        for v in values:
            assert " " not in v and "_" not in v


def test_class_name_and_folder():
    combo = cw.Combo("red", "circle", "large", "striped")
    assert cw.class_name(combo) == "red circle"
    assert cw.class_name(("red", "circle")) == "red circle"
    assert cw.class_folder(combo) == "red_circle"
    assert cw.parse_class("red_circle") == ("red", "circle")
    assert cw.parse_class("red circle") == ("red", "circle")
    names = {cw.class_name(c) for c in cw.all_combinations()}
    assert len(names) == len(cw.all_classes())
    with pytest.raises(ValueError):
        cw.parse_class("red banana")


def test_render_deterministic_and_varied():
    combo = ("blue", "star", "small", "dotted")
    a = cw.render(combo, 3, 48, seed=7)
    b = cw.render(combo, 3, 48, seed=7)
    assert a.mode == "RGB" and a.size == (48, 48)
    assert np.array_equal(_px(a), _px(b))
    c = cw.render(combo, 4, 48, seed=7)
    d = cw.render(combo, 3, 48, seed=8)
    assert not np.array_equal(_px(a), _px(c))
    assert not np.array_equal(_px(a), _px(d))
    for size in (32, 64, 224):
        assert cw.render(combo, 0, size).size == (size, size)


def test_render_shows_the_attributes():
    # the object's colour dominates the saturated pixels; large objects cover more pixels
    def object_pixels(img):
        x = _px(img).astype(float)
        sat = x.max(-1) - x.min(-1)
        return x[sat > 80]

    for colour, rgb in cw.COLOURS_RGB.items():
        obj = object_pixels(cw.render((colour, "square", "large", "striped"), 0, 64))
        assert len(obj) > 200
        mean = obj.mean(0)
        dists = {c: np.linalg.norm(mean - np.array(v)) for c, v in cw.COLOURS_RGB.items()}
        assert min(dists, key=dists.get) == colour
    small = np.mean([len(object_pixels(cw.render(("red", "circle", "small", "plain"), i, 64)))
                     for i in range(4)])
    large = np.mean([len(object_pixels(cw.render(("red", "circle", "large", "plain"), i, 64)))
                     for i in range(4)])
    assert large > 2.5 * small
    # shapes differ from each other
    imgs = [_px(cw.render(("red", s, "large", "plain"), 0, 64)) for s in cw.ATTRIBUTES["shape"]]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert not np.array_equal(imgs[i], imgs[j])


def test_base_new_split_coverage():
    for seed in (0, 1, 2):
        base, new = cw.base_new_split(seed)
        assert set(base).isdisjoint(new)
        assert set(base) | set(new) == set(cw.all_classes())
        assert len(base) == 40 and len(new) == 24
        for colour, shape in new:
            assert any(c == colour for c, _ in base), colour
            assert any(s == shape for _, s in base), shape
        for colour in cw.ATTRIBUTES["colour"]:
            assert sum(c == colour for c, _ in new) == 3
        for shape in cw.ATTRIBUTES["shape"]:
            assert sum(s == shape for _, s in new) == 3
        assert cw.base_new_split(seed) == (base, new)
    assert cw.base_new_split(0) != cw.base_new_split(1)
    base, new = cw.base_new_split(0, n_new_per_row=4)
    assert len(base) == len(new) == 32


def test_captions_mention_class_attributes():
    rng = np.random.default_rng(0)
    for combo in cw.all_combinations()[::7]:
        for _ in range(5):
            text = cw.caption(combo, rng)
            words = text.replace(".", " ").split()
            assert combo.colour in words and combo.shape in words, text
            assert cw.caption_is_true(text, combo)
    texts = {cw.caption(("red", "circle", "small", "plain"), np.random.default_rng(i))
             for i in range(50)}
    assert len(texts) >= 4  # several templates
    assert any("small" in t for t in texts) and any("plain" in t for t in texts)
    # deterministic per rng state; int seeds work too
    assert cw.caption(("red", "circle", "small", "plain"), 3) == \
        cw.caption(("red", "circle", "small", "plain"), 3)
    # partial captions may leave out the class attributes but stay true of the combo
    combo = cw.Combo("green", "heart", "large", "dotted")
    parts = {cw.caption(combo, np.random.default_rng(i), partial=True, p_partial=1.0)
             for i in range(40)}
    assert all(cw.caption_is_true(t, combo) for t in parts)
    assert any("heart" not in t for t in parts) and any("green" not in t for t in parts)
    assert not cw.caption_is_true("a red heart.", combo)


def test_write_image_folder(tmp_path):
    classes = [("red", "circle"), "blue star", "green_moon"]
    out = cw.write_image_folder(str(tmp_path), classes, n_per_class=3, size=32, seed=1)
    assert sorted(os.listdir(tmp_path)) == ["blue_star", "green_moon", "red_circle"]
    for folder in os.listdir(tmp_path):
        files = sorted(os.listdir(tmp_path / folder))
        assert files == ["0.png", "1.png", "2.png"]
    assert len(out) == 9
    from PIL import Image
    path, name = out[0]
    assert name == "red circle" and path.endswith(os.path.join("red_circle", "0.png"))
    with Image.open(path) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    # same call -> same pixels; jpg works
    again = tmp_path / "again"
    cw.write_image_folder(str(again), classes[:1], n_per_class=1, size=32, seed=1)
    with Image.open(path) as a, Image.open(again / "red_circle" / "0.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    cw.write_image_folder(str(tmp_path / "j"), classes[:1], n_per_class=2, size=32, ext="jpg")
    assert sorted(os.listdir(tmp_path / "j" / "red_circle")) == ["0.jpg", "1.jpg"]


def test_write_image_folder_balances_nuisance(tmp_path):
    # 8 images of a class cover each (size, background) pair once
    seen = []
    orig = cw.render

    def spy(combo, index=0, size=64, seed=0, domain=None):
        seen.append(cw.as_combo(combo))
        return orig(combo, index, size, seed, domain)

    cw.render = spy
    try:
        cw.write_image_folder(str(tmp_path), [("red", "circle")], n_per_class=8, size=16)
    finally:
        cw.render = orig
    assert len({(c.size, c.background) for c in seen}) == 8


SMOKE = ["--steps", "2", "--pool", "1", "--batch-size", "16", "--vision-layers", "1", "--text-layers", "1"]


def test_pretrain_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("clip")
    out = tmp_path / "tiny.pt"
    cmd = [sys.executable, "-m", "e2mim_tools.tiny_clip", "pretrain", *SMOKE, "--no-eval",
           "--threads", "2", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert report["config"]["steps"] == 2 and len(report["new_classes"]) == 24
    # The log speaks of seen pairs, not of a dataset's base classes (24 of them are among the 40).
    assert "40 seen (colour, shape) pairs" in r.stdout
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip
        import torch
        model, preprocess = clip.load(str(out), device="cpu", jit=False)
        from e2mim_clip.loader import weights_sha256
        assert report["weights_sha256"] == weights_sha256(torch.load(str(out), weights_only=True))
    assert model.visual.input_resolution == 64
    assert len(model.transformer.resblocks) == 1
    x = preprocess(cw.render(("red", "circle", "large", "plain"), 0, 64)).unsqueeze(0)
    with torch.no_grad():
        f = model.encode_image(x)
        t = model.encode_text(clip.tokenize(["a photo of a red circle."]))
    assert f.shape == t.shape == (1, 128)
