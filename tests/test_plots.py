"""The plot commands write PNG files that open: t-SNE of a trained prompt's features with
both views' class text features, base/new bars and few-shot curves from result trees."""
import os

from PIL import Image

from conftest import DEMO_CFG, ROOT
from e2mim_engine.trainer import TRAINER_REGISTRY
from test_results import b2n, put

from e2mim_tools import plots_cli


def opens(path, min_size=(200, 200)):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        return im.size


def test_tsne_with_both_views(demo_root, tmp_path):
    trainer = "E2MIM" if "E2MIM" in TRAINER_REGISTRY else "KgCoOp"
    cfg = os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml")
    flags = ["--root", demo_root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
             "--config-file", cfg]
    opts = ["DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", 1,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False]
    from e2mim_engine.cli import main as train_main
    assert train_main(list(map(str, flags + ["--output-dir", tmp_path / "run"] + opts))) == 0
    out = tmp_path / "fig" / "tsne.png"
    args = ["tsne", "--out", out, "--max-per-class", 4, "--", *flags, "--output-dir", tmp_path / "eval",
            "--model-dir", tmp_path / "run", "--load-epoch", 1, *opts]
    assert plots_cli.main(list(map(str, args))) == 0
    opens(out)


def test_collect_features_views(demo_root, tmp_path):
    from conftest import make_cfg
    from e2mim_engine.trainer import build_trainer
    tr = make_cfg("--root", demo_root, "--seed", 1, "--trainer", "CoOp", "--dataset-config-file", DEMO_CFG,
                  "--config-file", os.path.join(ROOT, "configs/trainers/CoOp/demo_tiny.yaml"),
                  "--output-dir", tmp_path, "DATASET.NUM_SHOTS", 2, "TRAINER.COOP.N_CTX", 4, "VERBOSE", False)
    t = build_trainer(tr)
    feats, labels, views = plots_cli.collect_features(t, max_per_class=3)
    assert feats.shape == (30, 128) and sorted(set(labels.tolist())) == list(range(10))
    assert set(views) == {"hand-crafted", "learned"} and views["learned"].shape == (10, 128)
    assert abs(float((views["hand-crafted"] ** 2).sum(-1).mean()) - 1) < 1e-4


def test_bars_and_fewshot_curves(tmp_path):
    root = str(tmp_path / "out")
    for d in ("caltech101", "eurosat"):
        for s in (1, 2, 3):
            for tr, off in (("CoOp", 0.0), ("KgCoOp", -3.0)):
                b2n(root, "train_base", d, tr, s, 80.0 + off + s)
                if not (tr == "KgCoOp" and d == "eurosat" and s == 3):  # one incomplete cell
                    b2n(root, "test_new", d, tr, s, 60.0 - 2 * off + s)
            for k in (1, 2, 4, 8, 16):
                put(root, f"fewshot/{d}/shots_{k}/CoOp/c/seed{s}", 40.0 + 3 * k ** 0.5 + s)
            put(root, f"fewshot/{d}/shots_0/ZeroshotCLIP/vit_b16/seed{s}", 45.0)
    bars, curves = tmp_path / "bars.png", tmp_path / "fewshot.png"
    assert plots_cli.main(["bars", root, "--out", str(bars)]) == 0
    assert plots_cli.main(["fewshot", root, "--out", str(curves)]) == 0
    w, h = opens(bars)
    assert w > h  # a grid of panels: Average, Caltech101, EuroSAT
    opens(curves)
    assert plots_cli.main(["fewshot", str(tmp_path / "empty_root_is_no_runs"), "--out",
                           str(tmp_path / "x.png")]) == 1
