"""Bad or unusual input, as a user meets it: image files of every mode PIL reads (decoded to
what they show), class names, class counts, seeds, shots, symlink loops, missing roots,
argument errors before anything is written, and advice to delete something that works when
followed. Each case asserts what the user sees."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from e2mim_engine.data.images import read_image
from e2mim_engine.errors import DataError

W, H = 8, 6


def ramp(dtype=np.uint8, top=255):
    return (np.arange(W * H).reshape(H, W) * top // (W * H - 1)).astype(dtype)


def png16_rgb(path, rgb16):
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), written chunk by chunk."""
    h, w, _ = rgb16.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def rgb(path):
    out = read_image(str(path))
    assert out.mode == "RGB" and out.size == (W, H)
    return np.asarray(out).astype(int)


# ---- (4) images of every mode --------------------------------------------------------------------
def test_16bit_grayscale_png_is_scaled_not_blank(tmp_path):
    """The probe's case: a 16-bit PNG was read as a blank white image."""
    a = ramp(np.uint16, 65535)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    got = rgb(tmp_path / "g16.png")
    assert (got == np.rint(a / 257)[..., None]).all() and got.min() == 0 and got.max() == 255


def test_32bit_integer_and_float_images(tmp_path):
    a = ramp(np.int32, 65535)
    Image.fromarray(a, "I").save(tmp_path / "i32.tif")
    assert (rgb(tmp_path / "i32.tif") == np.rint(a / 257)[..., None]).all()
    f = (np.arange(W * H).reshape(H, W) / (W * H - 1)).astype(np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f01.tif")
    assert (rgb(tmp_path / "f01.tif") == np.rint(f * 255)[..., None]).all()
    Image.fromarray(f * 200, "F").save(tmp_path / "f255.tif")
    assert (rgb(tmp_path / "f255.tif") == np.rint(f * 200)[..., None]).all()


def test_16bit_rgb_png_keeps_its_colours(tmp_path):
    c = np.stack([ramp(np.uint16, 65535), 65535 - ramp(np.uint16, 65535), np.full((H, W), 32896, np.uint16)], -1)
    png16_rgb(tmp_path / "rgb16.png", c)
    got = rgb(tmp_path / "rgb16.png")
    assert np.abs(got - c / 257).max() <= 1     # PIL keeps the high byte: within one step of 8 bits


def test_1bit_grayscale_palette_and_cmyk(tmp_path):
    bits = (ramp() > 127)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert (rgb(tmp_path / "b.png") == np.where(bits, 255, 0)[..., None]).all()
    Image.fromarray(ramp(), "L").save(tmp_path / "l.png")
    assert (rgb(tmp_path / "l.png") == ramp()[..., None]).all()
    colours = np.array([[200, 10, 30], [5, 150, 250], [90, 90, 0]], np.uint8)
    idx = (np.arange(W * H).reshape(H, W) % 3).astype(np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(colours.flatten().tolist() + [0] * (768 - 9))
    p.save(tmp_path / "p.png")
    assert (rgb(tmp_path / "p.png") == colours[idx]).all()
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    r, g, b = rgb(tmp_path / "c.jpg").mean(axis=(0, 1))
    assert r > 240 and g < 15 and b < 15                   # pure red stays red


def test_transparency_is_composited_over_white(tmp_path):
    colour = np.zeros((H, W, 4), np.uint8)
    colour[..., 0] = 255                                   # red, hidden under alpha 0 on the left half
    colour[..., 3] = 255
    colour[:, : W // 2, 3] = 0
    colour[:, W // 2:W // 2 + 1, 3] = 128
    Image.fromarray(colour, "RGBA").save(tmp_path / "rgba.png")
    got = rgb(tmp_path / "rgba.png")
    assert (got[:, : W // 2] == 255).all()                 # what a viewer shows: the white page
    assert (got[:, -1] == [255, 0, 0]).all()               # opaque pixels unchanged
    assert (got[:, W // 2] == [255, 127, 127]).all()       # half transparent: half way to white
    la = np.stack([ramp(), np.where(np.arange(W) < 2, 0, 255)[None].repeat(H, 0).astype(np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    g = rgb(tmp_path / "la.png")
    assert (g[:, :2] == 255).all() and (g[:, 2:] == ramp()[:, 2:, None]).all()
    idx = np.zeros((H, W), np.uint8)
    idx[:, W // 2:] = 1
    p = Image.fromarray(idx, "P")
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.save(tmp_path / "pt.png", transparency=0)            # palette entry 0 transparent
    g = rgb(tmp_path / "pt.png")
    assert (g[:, : W // 2] == 255).all() and (g[:, W // 2:] == [0, 0, 255]).all()


def test_exif_orientation_is_not_applied_as_in_the_published_loaders(tmp_path):
    a = np.zeros((H, W, 3), np.uint8)
    a[:, : W // 2] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    im.save(tmp_path / "o.png", exif=exif)
    assert Image.open(tmp_path / "o.png").getexif().get(0x0112) == 6
    assert (rgb(tmp_path / "o.png") == a).all()           # stored pixels, stored orientation


def test_undecodable_image_names_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DataError) as e:
        read_image(str(tmp_path / "x.png"))
    assert str(e.value).startswith(f"Cannot read image {tmp_path / 'x.png'}: ") and "corrupt or not an image" in \
        str(e.value)


# ---- (4) classes, seeds, shots, folders, roots -------------------------------------------------
from conftest import DEMO_CFG, ROOT, TINY_CFG, demo_args  # noqa: E402
from e2mim_engine.cli import main  # noqa: E402
from e2mim_engine.utils import read_json  # noqa: E402

CUSTOM_CFG = os.path.join(ROOT, "configs", "datasets", "custom_example.yaml")


def image_folder(root, classes=("apple", "pear", "plum"), per_class=6):
    for c in classes:
        d = root / "fruit" / "images" / c
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(np.random.RandomState(k).randint(0, 255, (32, 32, 3)).astype("uint8")).save(d / f"{k}.jpg")
    return root


def custom_args(root, out, *extra):
    return [str(a) for a in ("--root", root, "--seed", 1, "--trainer", "CoOp", "--config-file", TINY_CFG,
                             "--dataset-config-file", CUSTOM_CFG, "--output-dir", out, "DATASET.CUSTOM.DIR", "fruit",
                             "OPTIM.MAX_EPOCH", 1, "DATALOADER.NUM_WORKERS", 0, "TRAINER.COOP.N_CTX", 4,
                             "VERBOSE", False, *extra)]


def run(capsys, argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_class_name_longer_than_the_text_context(tmp_path, capsys):
    root = image_folder(tmp_path)
    (root / "fruit" / "names.json").write_text('{"plum": "%s"}' % " ".join(["zq"] * 80))
    code, _, err = run(capsys, custom_args(root, tmp_path / "out", "DATASET.CUSTOM.CLASSNAMES", "names.json"))
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: 1 prompt(s) do not fit CLIP's text context of 77 tokens") and "167 tokens" in err
    assert "DATASET.CUSTOM.CLASSNAMES" in err and not (tmp_path / "out").exists()


def test_fewer_than_two_classes_in_the_subsample(tmp_path, capsys):
    root = image_folder(tmp_path)             # 3 classes: base gets 2, new gets 1
    code, _, err = run(capsys, custom_args(root, tmp_path / "out", "DATASET.SUBSAMPLE_CLASSES", "new",
                                           "DATASET.NUM_SHOTS", 2))
    assert code == 2
    assert err.startswith("error: the 'new' half of ImageFolder has 1 class (plum): an accuracy over fewer than "
                          "two classes is 100% by construction")
    assert not (tmp_path / "out").exists()


def test_non_positive_shots_use_every_image_and_say_so(tmp_path, capsys):
    root = image_folder(tmp_path)
    code, out, _ = run(capsys, custom_args(root, tmp_path / "out", "DATASET.NUM_SHOTS", 0))
    assert code == 0
    assert "DATASET.NUM_SHOTS 0: every training image is used (Dassl's meaning of NUM_SHOTS < 1" in out
    res = read_json(tmp_path / "out" / "results.json")
    assert res["shots"] == 0 and res["shots_drawn"] == {"min": 3, "max": 3}   # 50% of 6 per class: all of them


@pytest.mark.parametrize("seed", [2**32, 10**20])
def test_seed_outside_the_generators_range(demo_root, tmp_path, capsys, seed):
    code, out, err = run(capsys, demo_args(demo_root, str(tmp_path / "out"), "SEED", seed))
    assert code == 2 and out == ""                      # before the config dump
    assert err == (f"error: SEED (--seed) must be an integer from 0 to 4294967295 (the range of the random "
                   f"generators), or negative for an unseeded run; got {seed}.\n")
    assert not (tmp_path / "out").exists()


def test_largest_seed_is_accepted(demo_root, tmp_path):
    from e2mim_engine.cli import build_parser, preflight, setup_cfg
    args = build_parser().parse_args([str(a) for a in demo_args(demo_root, str(tmp_path / "o"), seed=2**32 - 1)])
    assert preflight(args, setup_cfg(args)) == []


def test_symlink_loop_in_a_class_folder(tmp_path, capsys):
    root = image_folder(tmp_path)
    os.symlink("loop_b", root / "fruit" / "images" / "loop_a")
    os.symlink("loop_a", root / "fruit" / "images" / "loop_b")
    code, _, err = run(capsys, custom_args(root, tmp_path / "out"))
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: {root / 'fruit' / 'images' / 'loop_a'} is a symbolic link that loops")
    os.remove(root / "fruit" / "images" / "loop_a")
    os.remove(root / "fruit" / "images" / "loop_b")
    os.symlink("self.jpg", root / "fruit" / "images" / "pear" / "self.jpg")      # an image that loops
    code, _, err = run(capsys, custom_args(root, tmp_path / "out"))
    assert code == 2 and "pear/self.jpg is a symbolic link that loops" in err


@pytest.mark.parametrize("flags, expected", [
    (["--root", "{tmp}/nope", "DATASET.NAME", "Caltech101"],
     "error: The data root '{tmp}/nope' is not a folder. Pass --root (DATASET.ROOT) pointing to the folder that "
     "holds 'caltech-101/'."),
    (["--eval-only", "--model-dir", "{tmp}/nothere", "--load-epoch", "1"],
     "error: --model-dir {tmp}/nothere: no such folder. Pass the OUTPUT_DIR of a training run."),
    (["--resume", "{tmp}/nothere"], "error: --resume {tmp}/nothere: no such folder."),
])
def test_path_errors_come_first_and_leave_no_folder(demo_root, tmp_path, capsys, flags, expected):
    flags = [f.format(tmp=tmp_path) for f in flags]
    argv = [str(a) for a in demo_args(demo_root, str(tmp_path / "out"))]
    pairs = flags[2:] if flags[0] == "--root" else []
    if flags[0] == "--root":
        argv = argv[2:]
        flags = flags[:2]
    code, out, err = run(capsys, flags + argv + pairs)
    assert code == 2 and out == "" and err.startswith(expected.format(tmp=tmp_path)) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_generated_world_at_a_missing_root_is_announced_before_generating(tmp_path, capsys, monkeypatch):
    from e2mim_datasets.demo import Demo
    seen = {}
    real = Demo.generate

    def generate(dataset_dir):
        seen["err"] = capsys.readouterr().err       # what the terminal showed before generating
        return real(dataset_dir)

    monkeypatch.setattr(Demo, "generate", staticmethod(generate))
    code, _, _ = run(capsys, demo_args(str(tmp_path / "typo"), str(tmp_path / "out"), "OPTIM.MAX_EPOCH", 0))
    assert code == 0
    assert seen["err"] == (f"note: {tmp_path / 'typo' / 'demo'} does not exist: Demo will be generated there now. "
                           f"If you meant an existing copy, stop this run and check --root (DATASET.ROOT).\n")


def test_evaluation_never_writes_into_a_training_runs_folder(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, demo_args(demo_root, str(out)))[0] == 0
    before = (out / "results.json").read_bytes()
    code, _, err = run(capsys, ["--eval-only", "--model-dir", str(out), "--load-epoch", "2"]
                       + [str(a) for a in demo_args(demo_root, str(out))])
    assert code == 2 and err.startswith(f"error: --output-dir {out} holds a training run")
    assert (out / "results.json").read_bytes() == before


# ---- (4) every "delete X" advice works when followed ------------------------------------------
def _truncate_checkpoint(out, root):
    f = out / "prompt_learner" / "model.pth.tar-1"
    f.write_bytes(f.read_bytes()[:200])


def _corrupt_manifest(out, root):
    (out / "manifest.json").write_text("{not json")


def _remove_named_checkpoint(out, root):
    os.remove(out / "prompt_learner" / "model.pth.tar-1")


def _corrupt_split_file(out, root):
    (root / "fruit" / "split_custom.json").write_text('{"train": [')


@pytest.mark.parametrize("breakage, advice", [
    (_truncate_checkpoint, r"delete the folder (\S+) to start this run over"),
    (_corrupt_manifest, r"^error: (\S+)/manifest.json is not a checkpoint manifest.*Delete the output folder"),
    (_remove_named_checkpoint, r"The checkpoint manifest of (\S+) names files that are gone.*Delete the folder"),
    (_corrupt_split_file, r"The split file (\S+) is not valid JSON .*Delete it to have it regenerated"),
])
def test_delete_advice_works_when_followed(tmp_path, capsys, breakage, advice):
    import re
    import shutil
    root = image_folder(tmp_path)
    out = tmp_path / "out"
    # a run interrupted after epoch 1 of 2 (its checkpoint and manifest on disk, no results yet)
    assert run(capsys, custom_args(root, out, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1))[0] == 0
    os.remove(out / "results.json")
    os.remove(out / "prompt_learner" / "model.pth.tar-2")
    (out / "manifest.json").write_text((out / "manifest.json").read_text().replace("model.pth.tar-2", "model.pth.tar-1")
                                       .replace('"epoch": 2', '"epoch": 1'))
    breakage(out, root)
    code, _, err = run(capsys, custom_args(root, out, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1))
    assert code == 2 and "Traceback" not in err
    m = re.search(advice, err.strip(), re.S)
    assert m, err
    target = m.group(1).rstrip(".,")
    (shutil.rmtree if os.path.isdir(target) else os.remove)(target)       # do as told
    code, _, err = run(capsys, custom_args(root, out, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1))
    assert code == 0, err
    assert read_json(out / "results.json")["epoch"] == 2
