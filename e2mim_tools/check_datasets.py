"""The dataset layout checker (``e2mim-check-datasets --root DATA``, ``python -m e2mim_tools.check_datasets``).

For a data root it prints one row per dataset (found or missing, classes, images per split,
split file present) and, for anything missing, the exact path expected and where the data
comes from. It never writes split or few-shot files (ImageNet's listing cache may be written).
"""
import argparse
import os
import sys

import e2mim_datasets  # noqa: F401  (registers the zoo)
from e2mim_engine.data.bases import DATASET_REGISTRY, TestOnlyDataset
from e2mim_engine.data.folders import CLASSNAMES_SOURCE, find_classnames_file, layout_hint
from e2mim_engine.data.splits import no_dataset_writes
from e2mim_engine.errors import UserError

OK, MISSING, INCOMPLETE, ERROR, CORRUPT = "ok", "missing", "incomplete", "error", "corrupt images"


def benchmark_names():
    """Registered datasets that live in a fixed folder under the root (not generated, not custom)."""
    return [n for n, cls in DATASET_REGISTRY.items() if cls.__dict__.get("dataset_dir") and not cls.generated]


def _kind(path):
    return "file" if os.path.splitext(path)[1] else "folder"


def expected_problems(cls, root):
    """[(path, what)] for required files that are absent, without loading the dataset."""
    ddir = os.path.join(root, cls.dataset_dir)
    if not os.path.isdir(ddir):
        return [(ddir, "dataset folder")]
    problems = []
    subdir = getattr(cls, "image_subdir", "")
    required = list(getattr(cls, "required", ()))
    if issubclass(cls, TestOnlyDataset):
        required = [subdir] if subdir else []
        if find_classnames_file(ddir, root) is None:
            problems.append((os.path.join(ddir, "classnames.txt"),
                             f"file (or {os.path.join(root, 'imagenet', 'classnames.txt')}); {CLASSNAMES_SOURCE}"))
    for rel in required:
        p = os.path.join(ddir, rel)
        if not os.path.exists(p):
            problems.append((p, _kind(rel)))
    split_file = getattr(cls, "split_file", "")
    if split_file and not os.path.exists(os.path.join(ddir, split_file)):
        sources = getattr(cls, "split_sources", ())
        absent = [os.path.join(ddir, s) for s in sources if not os.path.exists(os.path.join(ddir, s))]
        if absent:
            problems.append((os.path.join(ddir, split_file),
                             f"split file (or, to make it, {', '.join(absent)})"))
    return problems


def _split_column(cls, ddir):
    split_file = getattr(cls, "split_file", "")
    if split_file:
        if os.path.exists(os.path.join(ddir, split_file)):
            return f"yes ({split_file})"
        return f"no: made on first use ({split_file})"
    return getattr(cls, "split_note", "-")


def _verify_images(dataset, limit=None):
    from PIL import Image
    paths = sorted({d.impath for part in (dataset.train_x, dataset.val or [], dataset.test) for d in part})
    if limit:
        paths = paths[:limit]
    bad = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 - any failure to decode is reported
            bad.append((p, f"{type(e).__name__}: {e}"))
    return bad


def check_dataset(name, root, cfg=None, verify_images=False):
    """One row: dict(name, folder, status, classes, train, val, test, split, problems, error, corrupt)."""
    from e2mim_engine.config import get_cfg_default
    cls = DATASET_REGISTRY.get(name)
    root = os.path.abspath(os.path.expanduser(root))
    ddir = os.path.join(root, cls.__dict__.get("dataset_dir", "") or "")
    row = dict(name=name, folder=ddir, status=OK, classes=None, train=None, val=None, test=None,
               split=_split_column(cls, ddir), problems=[], error="", corrupt=[], source=cls.source,
               layout=cls.layout)
    if cls.__dict__.get("dataset_dir"):
        row["problems"] = expected_problems(cls, root)
        if row["problems"]:
            row["status"] = MISSING if row["problems"][0][1] == "dataset folder" else INCOMPLETE
            if row["status"] == MISSING:
                row["split"] = "-"
            return row
    if cfg is None:
        cfg = get_cfg_default()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASET.ROOT, cfg.DATASET.NAME = root, name
    cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.SEED = -1, "all", -1
    cfg.freeze()
    try:
        with no_dataset_writes():
            ds = cls(cfg)
    except UserError as e:
        row.update(status=ERROR, error=str(e))
        return row
    except Exception as e:  # noqa: BLE001 - a broken file must not stop the other checks
        row.update(status=ERROR, error=f"{type(e).__name__}: {e}")
        return row
    row["folder"] = ds.dataset_dir
    row.update(classes=ds.num_classes, train=len(ds.train_x), val=len(ds.val) if ds.val else 0, test=len(ds.test))
    if isinstance(ds, TestOnlyDataset):
        row["train"] = row["val"] = "-"
    if verify_images:
        row["corrupt"] = _verify_images(ds)
        if row["corrupt"]:
            row["status"] = CORRUPT
    return row


def check_root(root, names=None, cfg=None, verify_images=False):
    names = names or benchmark_names()
    return [check_dataset(n, root, cfg=cfg, verify_images=verify_images) for n in names]


def format_report(rows, root):
    from tabulate import tabulate
    table = [[r["name"], os.path.relpath(r["folder"], root) if r["folder"].startswith(root) else r["folder"],
              r["status"], "" if r["classes"] is None else r["classes"],
              "" if r["train"] is None else r["train"], "" if r["val"] is None else r["val"],
              "" if r["test"] is None else r["test"], r["split"]] for r in rows]
    out = [f"Data root: {root}",
           tabulate(table, headers=["dataset", "folder", "status", "classes", "train", "val", "test", "split file"])]
    details = [r for r in rows if r["status"] != OK]
    if details:
        out.append("")
        out.append("What to do:")
    for r in details:
        if r["problems"]:
            out.append(f"- {r['name']} ({r['status']}):")
            for path, what in r["problems"]:
                out.append(f"    expected {path}  [{what}]")
                hint = layout_hint(path).strip()
                if hint:
                    out.append(f"      hint: {hint}")
            out.append(f"    layout: {r['layout']}")
            out.append(f"    source: {r['source']}")
        elif r["error"]:
            out.append(f"- {r['name']} (error): {r['error']}")
        if r["corrupt"]:
            out.append(f"- {r['name']}: {len(r['corrupt'])} image(s) cannot be decoded; replace them or remove "
                       f"them from the split:")
            for p, why in r["corrupt"][:10]:
                out.append(f"    {p}  ({why})")
    return "\n".join(out)


def exit_code(rows, explicit=False):
    """1 if any found dataset is broken (or, when datasets were named explicitly, missing)."""
    bad = {INCOMPLETE, ERROR, CORRUPT} | ({MISSING} if explicit else set())
    return 1 if any(r["status"] in bad for r in rows) else 0


def build_parser():
    p = argparse.ArgumentParser(description="Check the dataset folders under a data root (CoOp's layouts).")
    p.add_argument("--root", required=True, help="the data root (train.py --root)")
    p.add_argument("--names", nargs="+", default=None,
                   help="datasets to check (default: all benchmarks)")
    p.add_argument("--dataset-config-file", default="",
                   help="check the dataset of this yaml instead (e.g. a custom ImageFolder config)")
    p.add_argument("--verify-images", action="store_true",
                   help="also open every listed image and report those that cannot be decoded (slow)")
    return p


def main(argv=None):
    from e2mim_engine.config import get_cfg_default, merge_from_file
    args = build_parser().parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"error: the data root {root} is not a folder. Pass --root pointing to the folder that holds the "
              f"dataset folders (caltech-101/, oxford_pets/, imagenet/, ...).", file=sys.stderr)
        return 2
    cfg, names = None, args.names
    try:
        if args.dataset_config_file:
            cfg = get_cfg_default()
            merge_from_file(cfg, args.dataset_config_file, "dataset config file")
            names = [cfg.DATASET.NAME]
        for n in names or []:
            DATASET_REGISTRY.get(n)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = check_root(root, names=names, cfg=cfg, verify_images=args.verify_images)
    print(format_report(rows, root))
    return exit_code(rows, explicit=bool(names))


if __name__ == "__main__":
    sys.exit(main())
