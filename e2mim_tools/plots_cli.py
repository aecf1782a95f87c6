"""Figures as PNG files (the drawing code is e2mim_engine/plots.py).

  # t-SNE of test-image features with the class text features of both views (hand-crafted
  # and learned prompts), the paper's Figure 2; after --, train.py's arguments of the run
  e2mim-plots tsne --out tsne.png -- --root $DATA --trainer E2MIM \
      --dataset-config-file configs/datasets/eurosat.yaml \
      --config-file configs/trainers/E2MIM/vit_b16_base2new.yaml \
      --model-dir output/base2new/train_base/eurosat/shots_16/E2MIM/vit_b16_base2new/seed1 \
      --load-epoch 10 DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

  # per-dataset base/new bars and few-shot curves from the protocol output folders
  e2mim-plots bars --out base2new.png output
  e2mim-plots fewshot --out fewshot.png output
"""
import argparse
import os
import sys

from e2mim_tools import plots


def collect_features(trainer, split="test", max_per_class=50):
    """Image features (normalized, float32) of up to ``max_per_class`` images per class, their
    labels, and the class text features of each view the trainer has: {"hand-crafted": [C, D],
    "learned": [C, D]} (the learned view only for trainers with one prompt per class)."""
    import torch

    from e2mim_clip.prompting import encode_images, handcrafted_text_features
    from e2mim_clip.templates import dataset_template

    clip_model = getattr(trainer, "clip", None) or trainer.model.clip
    trainer.set_model_mode("eval")
    loader = trainer.val_loader if split == "val" and trainer.val_loader is not None else trainer.test_loader
    feats, labels, counts = [], [], {}
    prec = trainer.precision
    with torch.no_grad():
        for batch in loader:
            image, label = trainer.parse_batch_test(batch)
            keep = []
            for i, y in enumerate(label.tolist()):
                if counts.get(y, 0) < max_per_class:
                    counts[y] = counts.get(y, 0) + 1
                    keep.append(i)
            if keep:
                with prec.autocast():
                    feats.append(encode_images(clip_model, image[keep]).cpu())
                labels.append(label[keep].cpu())
            if len(counts) == trainer.num_classes and all(c >= max_per_class for c in counts.values()):
                break
        views = {}
        hand = getattr(trainer, "text_h", None)
        if hand is None:
            node = trainer.cfg.TRAINER.get(getattr(trainer, "node", ""), None)
            template_set = node.get("TEMPLATE_SET", "coop") if node is not None else "coop"
            templates = getattr(trainer, "templates", None) or [
                dataset_template(trainer.cfg, trainer.dm.dataset, template_set)]
            with prec.autocast():
                hand = handcrafted_text_features(clip_model, trainer.classnames, templates)
        views["hand-crafted"] = hand.float().cpu()
        model = getattr(trainer, "model", None)
        if model is not None and hasattr(model, "text_features"):
            try:
                with prec.autocast():
                    views["learned"] = model.text_features().float().cpu()
            except TypeError:  # CoCoOp: prompts depend on the image, no single class feature
                pass
    return torch.cat(feats).numpy(), torch.cat(labels).numpy(), {k: v.numpy() for k, v in views.items()}



def tsne_main(a, train_args):
    import e2mim_datasets  # noqa: F401  (registers the dataset zoo)
    import e2mim_trainers  # noqa: F401  (registers every method)
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.trainer import build_trainer
    from e2mim_engine.seeding import set_random_seed
    from e2mim_engine.utils import setup_logger

    args = build_parser().parse_args(train_args)
    if not args.output_dir:
        args.output_dir = os.path.join(os.path.dirname(os.path.abspath(a.out)) or ".", "tsne_run")
    cfg = setup_cfg(args)
    setup_logger(None)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    if args.model_dir:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    feats, labels, views = collect_features(trainer, a.split, a.max_per_class)
    title = a.title or (f"{cfg.TRAINER.NAME} on {cfg.DATASET.NAME} ({cfg.DATASET.SUBSAMPLE_CLASSES} classes): "
                        f"images and {' / '.join(views)} class prompts")
    plots.tsne(feats, labels, views, trainer.classnames, a.out, perplexity=a.perplexity, seed=a.seed, title=title)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, train_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tsne", help="t-SNE of image and class text features (train.py arguments after --)")
    t.add_argument("--out", required=True, help="PNG file")
    t.add_argument("--split", default="test", choices=["test", "val"])
    t.add_argument("--max-per-class", type=int, default=50, help="images per class in the embedding")
    t.add_argument("--perplexity", type=float, default=30.0)
    t.add_argument("--seed", type=int, default=0, help="t-SNE's random state")
    t.add_argument("--title", default="")
    for name, helptext in (("bars", "per-dataset base/new bars"), ("fewshot", "few-shot curves")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("roots", nargs="+", help="output folders of the protocol scripts")
        s.add_argument("--out", required=True, help="PNG file")
        s.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
        s.add_argument("--datasets", nargs="+")
        s.add_argument("--methods", nargs="+")
        if name == "bars":
            s.add_argument("--no-reported", action="store_true", help="leave out the published averages (e2mim_tools.published)")
    a = p.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    if a.cmd == "tsne":
        if not train_args:
            p.error("tsne needs the run's train.py arguments after --")
        tsne_main(a, train_args)
    else:
        try:
            if a.cmd == "bars":
                plots.base2new_bars(a.roots, a.out, reported=not a.no_reported, seeds=a.seeds,
                                    datasets=a.datasets, methods=a.methods)
            else:
                plots.fewshot_curves(a.roots, a.out, seeds=a.seeds, datasets=a.datasets, methods=a.methods)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
