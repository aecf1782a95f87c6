"""Throughput and peak memory per trainer on a CLIP shape with random weights.

Subcommands (one timing loop, e2mim_tools.bench_timing; the rows are dicts with the fields
of ROW_FIELDS, printed as a table and written with --json):

  steps       for each (backbone, trainer entry) a fresh process builds the trainer exactly
              as train.py does (on a synthetic class list, images generated in memory so
              disk and JPEG decoding are not timed), warms up, then times training steps
              (the trainer's public train_step: forward, backward and optimizer step) and
              evaluation batches (eval_step: model_inference without autograd).
  precisions  steps, once per precision (PREC=<p> on each trainer's own node), plus a table
              with the precisions side by side.
  encoders    the frozen encoders' forward variants against a 1024^2 fp32 matmul
              (bench_encoders).
  published   the published CoOp trainer (KaiyangZhou/CoOp on Dassl.pytorch; the given
              folders form the PYTHONPATH of its subprocess, nothing else sees them) against
              our CoOp, on the same random weights, alternating step by step (two worker
              processes answering one step at a time), with ours/published ratios.

  e2mim-benchmark steps --backbones random:tiny random:ViT-B/16 --trainers ZeroshotCLIP CoOp
  e2mim-benchmark steps --device cuda --classes 1000 --batch 32 --opts TRAINER.COOP.PREC fp16
  e2mim-benchmark steps --backbones random:ViT-B/16 --repeat 3 \\
      --trainers CoOp E2MIM E2MIM:TRAINER.E2MIM.MIX_LEVEL=feature
  e2mim-benchmark precisions fp32 bf16 amp --trainers CoOp E2MIM
  e2mim-benchmark encoders --backbones random:ViT-B/16 --batch 2 --steps 10 [--compile]
  e2mim-benchmark published /tmp/CoOp /tmp/Dassl.pytorch [/tmp/deps] --backbones random:ViT-B/16
  e2mim-benchmark published ... --cached-train-features   # ours on cached training features

A trainer entry NAME:KEY=VALUE[,KEY=VALUE...] adds config pairs to that entry only (one
table row per entry; PREC=<p> is short for TRAINER.<the trainer's node>.PREC). Training time
is the median of the timed steps; with --repeat R every entry runs R times, round-robin, and
the fastest run is kept (shared machines). --interleave times all entries of all backbones in
one process with their steps alternating, which keeps ratios between entries (and between
backbones: `--backbones open_clip:ViT-B-16:random random:ViT-B/16`) fair when other jobs load
the machine (times only). --cached-train-features: our trainers step on frozen
features, as with DATALOADER.FEATURE_CACHE.TRAIN_VIEWS (computed once, untimed).

Peak memory: on CUDA the allocator's peak during the timed steps; on CPU the process's peak
resident set size (includes the Python runtime and the frozen CLIP).

The flags of the single-command version keep working (no subcommand: --encoders,
--published PATH..., --precisions P... choose the subcommand; otherwise steps); two of them
together are an error naming the subcommands.
"""
import argparse
import json
import os
import subprocess
import sys

from .bench_timing import median, peak_memory_mb, serve, time_rounds

COMMANDS = ("steps", "precisions", "encoders", "published")
PRECISIONS = ("fp32", "fp16", "amp", "bf16")
PUBLISHED_PRECISIONS = ("fp16", "fp32", "amp")  # what CoOp's code accepts (its check_cfg)
# A row: what was run (entry = the command-line entry; method, settings and
# requested_precision = the entry parsed), where, and what was measured (None: not measured).
ROW_FIELDS = ("backbone", "trainer", "method", "settings", "requested_precision", "precision", "device", "classes",
              "batch", "trainable_params", "train_img_s", "train_ms_img", "eval_img_s", "peak_mem_mb")


def _setup(a):
    """Register the synthetic class list, set threads and quiet the logger (in this process)."""
    import logging

    import torch

    import e2mim_datasets  # noqa: F401
    import e2mim_trainers  # noqa: F401
    from e2mim_engine.utils import setup_logger

    placeholder_dataset("_BenchClasses", a.classes)
    torch.set_num_threads(a.threads or torch.get_num_threads())
    setup_logger(None)
    logging.getLogger("e2mim").setLevel(logging.WARNING)


def placeholder_dataset(name, num_classes):
    """Register (once) a dataset ``name`` of ``num_classes`` classes with 2 placeholder items
    each, whose images are never read (batches are made in memory)."""
    from e2mim_engine.data import DATASET_REGISTRY, DatasetBase, Datum

    C = num_classes

    def __init__(self, cfg):
        items = [Datum(f"/nonexistent/{i}.jpg", i % C, classname=f"class {i % C}") for i in range(2 * C)]
        DatasetBase.__init__(self, train_x=items, val=items[:C], test=items[:C])

    if name not in DATASET_REGISTRY:
        DATASET_REGISTRY.register(type(name, (DatasetBase,), {"__init__": __init__}))
    return name


def parse_entry(entry):
    """NAME[:KEY=VALUE,...] -> (NAME, {KEY: VALUE}) (PREC left short)."""
    name, _, variant = entry.partition(":")
    settings = {}
    for kv in variant.split(","):
        if kv:
            key, eq, value = kv.partition("=")
            if not eq:
                raise SystemExit(f"Trainer entry {entry!r}: {kv!r} is not KEY=VALUE "
                                 f"(entries are NAME[:KEY=VALUE,KEY=VALUE...]).")
            settings[key] = value
    return name, settings


def with_precision(entry, prec):
    """The entry with PREC=<prec> added (what the precisions subcommand runs)."""
    return f"{entry}{',' if ':' in entry else ':'}PREC={prec}"


def _build(a, entry, tmp, backbone=None):
    """A trainer for one entry NAME[:KEY=VALUE,...] on ``backbone`` (default --backbone), built
    exactly as train.py does, and its row."""
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.seeding import set_random_seed
    from e2mim_engine.trainer import TRAINER_REGISTRY, build_trainer

    name, settings = parse_entry(entry)
    node = getattr(TRAINER_REGISTRY.get(name), "node", None)
    extra = []
    for key, value in settings.items():
        if key == "PREC":
            if node is None:
                raise SystemExit(f"{entry}: trainer {name} has no config node with a PREC key.")
            key = f"TRAINER.{node}.PREC"
        extra += [key, value]
    backbone = backbone or a.backbone
    argv = ["--trainer", name, "--backbone", backbone, "--output-dir", os.path.join(tmp, "out"),
            "--seed", "1", "DATASET.NAME", "_BenchClasses", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(a.batch), "USE_CUDA", str(a.device == "cuda"),
            "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "VERBOSE", "False"] + list(a.opts) + extra
    cfg = setup_cfg(build_parser().parse_args(argv))
    set_random_seed(1)
    t = build_trainer(cfg)
    row = dict.fromkeys(ROW_FIELDS)
    row.update(backbone=backbone, trainer=entry, method=name,
               settings={k: v for k, v in settings.items() if k != "PREC"},
               requested_precision=settings.get("PREC"), device=a.device, classes=a.classes, batch=a.batch,
               precision=getattr(getattr(t, "precision", None), "name", "-"),
               trainable_params=t.num_trainable_params())
    return t, cfg, row


def _batch(a, cfg):
    import torch

    res, B, C = cfg.INPUT.SIZE[0], a.batch, a.classes
    img = torch.randn(B, 3, res, res, device=torch.device(a.device))
    # anchors then partners of another class: valid for pair-based samplers too
    lab = torch.cat([torch.arange(B // 2), torch.arange(B - B // 2) + 1]) % C
    return {"img": img, "label": lab, "index": torch.arange(B), "domain": torch.zeros(B, dtype=torch.long)}


def _use_cached_features(a, t, batch):
    """--cached-train-features: the batch also holds normalized frozen features ("feat"), what
    DATALOADER.FEATURE_CACHE.TRAIN_VIEWS hands forward_backward in place of the images."""
    import torch

    if not a.cached_train_features:
        return batch
    if not t.frozen_train_features:
        raise SystemExit(f"--cached-train-features: {type(t).__name__} cannot train on cached features")
    with torch.no_grad():
        batch = dict(batch, feat=t.encode_frozen(batch["img"]))  # normalized float32, as cached
    return batch


def measure(a):
    """Internal (--single): the entry --trainer, or with --interleave all of --trainers on all
    of --backbones, in this process; prints one RESULT line per entry. Training steps of all entries first (rounds
    alternating between entries), then evaluation batches: a prompt method encodes its class
    features once per switch to eval mode, as test() does, not per batch."""
    import torch

    _setup(a)
    dev = torch.device(a.device)
    entries = [(bb, e) for bb in a.backbones for e in a.trainers] if a.interleave else [(a.backbone, a.trainer)]
    runs = []
    for k, (bb, entry) in enumerate(entries):
        t, cfg, row = _build(a, entry, os.path.join(a.tmp, str(k)), bb)
        runs.append((t, _use_cached_features(a, t, _batch(a, cfg)), row))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train = time_rounds({k: (lambda t=t, b=b: t.train_step(b)) for k, (t, b, _) in enumerate(runs)
                         if t.get_model_names()}, a.steps, a.warmup, dev)
    evals = time_rounds({k: (lambda t=t, b=b: t.eval_step(b["img"])) for k, (t, b, _) in enumerate(runs)},
                        a.steps, a.warmup, dev)
    for k, (_, _, row) in enumerate(runs):
        if k in train:
            row.update(train_img_s=a.batch / median(train[k]), train_ms_img=1000 * median(train[k]) / a.batch)
        row["eval_img_s"] = a.batch / median(evals[k])
        # with several entries resident, peak memory cannot be told apart per entry
        row["peak_mem_mb"] = None if a.interleave else peak_memory_mb(dev)
        print("RESULT " + json.dumps(row), flush=True)


def worker(a):
    """Internal (--worker): one entry driven by the parent over stdin (bench_timing.serve, the
    protocol of bench_published, so ours and the published trainer alternate step by step).
    ``--save-clip`` writes the frozen CLIP's float32 state dict first, for the published side."""
    import torch

    _setup(a)
    t, cfg, row = _build(a, a.trainer, a.tmp)
    if a.save_clip:
        torch.save({k: v.float() for k, v in t.model.clip.state_dict().items()}, a.save_clip)
    batch = _use_cached_features(a, t, _batch(a, cfg))

    def eval_prepare():
        # as test() does: eval mode, class features encoded once (not part of a batch's time)
        t.set_model_mode("eval")
        t.eval_step(batch["img"])

    tasks = {"train": lambda: t.train_step(batch), "eval": lambda: t.eval_step(batch["img"])}
    for _ in range(a.warmup):
        tasks["train"]()
        eval_prepare()
        tasks["eval"]()
    serve(tasks, torch.device(a.device), row, prepare={"eval": eval_prepare})


class _Worker:
    """A benchmark worker subprocess (ours or the published one) and its line protocol."""

    def __init__(self, cmd, what, env=None, cwd=None):
        self.what = what
        self.log = open(os.path.join(cwd or ".", f"{abs(hash(what))}.stderr"), "w+") if cwd else subprocess.DEVNULL
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, env=env, cwd=cwd)
        self._expect("READY")

    def _expect(self, prefix):
        line = self.p.stdout.readline()
        while line and not line.startswith(prefix):
            line = self.p.stdout.readline()
        if not line:
            err = ""
            if self.log is not subprocess.DEVNULL:
                self.log.seek(0)
                err = self.log.read()[-3000:]
            raise SystemExit(f"The benchmark worker for {self.what} stopped before answering "
                             f"(exit {self.p.wait()}):\n{err}")
        return line[len(prefix):].strip()

    def time(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return float(self._expect("T "))

    def finish(self):
        self.p.stdin.write("done\n")
        self.p.stdin.flush()
        row = json.loads(self._expect("RESULT "))
        self.p.wait()
        return row


def _common_args(a):
    return ["--device", a.device, "--classes", str(a.classes), "--batch", str(a.batch), "--warmup", str(a.warmup),
            "--threads", str(a.threads)]


def published(a):
    """Our CoOp against the published CoOp trainer, step by step alternating, ``--repeat``
    rounds of ``--steps`` train and eval steps each, for every precision both accept.
    Prints medians and ratios (ours / published; > 1 means ours is faster)."""
    import tempfile

    from tabulate import tabulate

    missing = [p for p in a.published if not os.path.isdir(p)]
    if missing:
        raise SystemExit(f"published: {', '.join(missing)} is not a folder. Give the folders to put on the "
                         f"published code's PYTHONPATH: a copy of github.com/KaiyangZhou/CoOp, one of "
                         f"github.com/KaiyangZhou/Dassl.pytorch and, if Dassl's requirements (gdown, "
                         f"wilds, pandas, ...) are not installed, a folder holding them.")
    bb = a.backbones[0]
    if len(a.backbones) > 1:
        print(f"published uses the first backbone only ({bb})", file=sys.stderr)
    precs = [p for p in (a.precisions or ["fp32"]) if p in PUBLISHED_PRECISIONS]
    skipped = [p for p in (a.precisions or []) if p not in PUBLISHED_PRECISIONS]
    if skipped:
        print(f"published: the published CoOp has no {', '.join(skipped)} (it accepts "
              f"{', '.join(PUBLISHED_PRECISIONS)}); skipped", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in a.published))
    ours_only = ["--cached-train-features"] if a.cached_train_features else []
    table, rows = [], []
    for prec in precs:
        with tempfile.TemporaryDirectory() as tmp:
            clip_file = os.path.join(tmp, "clip.pt")
            ours = _Worker([sys.executable, "-m", "e2mim_tools.benchmark", "--worker", "--trainer",
                            with_precision("CoOp", prec), "--backbone", bb, "--tmp", tmp, "--save-clip", clip_file,
                            *_common_args(a), *ours_only, *(["--opts", *a.opts] if a.opts else [])],
                           f"our CoOp ({prec})", cwd=tmp)
            pub_tmp = os.path.join(tmp, "published")
            os.makedirs(pub_tmp)
            theirs = _Worker([sys.executable, "-m", "e2mim_tools.bench_published", "--clip", clip_file,
                              "--tmp", pub_tmp, "--prec", prec, *_common_args(a)], f"published CoOp ({prec})",
                             env=env, cwd=pub_tmp)
            times = {(w, k): [] for w in ("ours", "theirs") for k in ("train", "eval")}
            for r in range(max(1, a.repeat)):
                for _ in range(a.steps):
                    for k in ("train", "eval"):
                        # alternate who goes first, so neither always follows the other
                        pair = [("ours", ours), ("theirs", theirs)][::1 if r % 2 == 0 else -1]
                        for w, proc in pair:
                            times[(w, k)].append(proc.time(k))
            row_o, row_t = ours.finish(), theirs.finish()
        med = {key: median(v) for key, v in times.items()}
        for w, row in (("ours", row_o), ("theirs", row_t)):
            row.update(backbone=bb, device=a.device, classes=a.classes, batch=a.batch,
                       train_img_s=a.batch / med[(w, "train")], eval_img_s=a.batch / med[(w, "eval")],
                       train_ms_img=1000 * med[(w, "train")] / a.batch)
            rows.append({**dict.fromkeys(ROW_FIELDS), **row})
        table.append([prec, f"{row_o['train_img_s']:.2f}", f"{row_t['train_img_s']:.2f}",
                      f"{row_o['train_img_s'] / row_t['train_img_s']:.2f}x",
                      f"{row_o['eval_img_s']:.2f}", f"{row_t['eval_img_s']:.2f}",
                      f"{row_o['eval_img_s'] / row_t['eval_img_s']:.2f}x",
                      f"{row_o['peak_mem_mb']:.0f}", f"{row_t['peak_mem_mb']:.0f}"])
    print(f"ours vs published CoOp: backbone={bb} device={a.device} classes={a.classes} batch={a.batch} "
          f"steps={a.steps} x repeat={max(1, a.repeat)} (alternating step by step; medians) "
          f"threads={a.threads or 'default'}")
    print(tabulate(table, headers=["prec", "ours train img/s", "published train img/s", "train ratio",
                                   "ours eval img/s", "published eval img/s", "eval ratio",
                                   "ours peak MB", "published peak MB"], tablefmt="github"))
    print("ratio = ours / published (> 1: ours faster). Eval: one batch of each side's model_inference; the "
          "published CoOp re-encodes the class prompts every batch, ours once per evaluation (untimed, as in test()).")
    write_json(a, rows)
    return 0


def steps(a):
    """Every (backbone, trainer entry) in its own process (or, with --interleave, all of them
    in one), --repeat times round-robin; the fastest run of each is kept.
    Returns the exit status: 1 when an entry failed (the table still shows the others)."""
    import tempfile

    failed = []

    def run(trainer_args, bb, what, where=None):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "e2mim_tools.benchmark", "--single", *trainer_args, "--backbone", bb,
                   "--tmp", tmp, "--steps", str(a.steps), *_common_args(a)]
            if a.cached_train_features:
                cmd.append("--cached-train-features")
            if a.opts:
                cmd += ["--opts"] + a.opts
            r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode or not lines:
            print(f"{what} on {where or bb} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
            failed.append(f"{what} on {where or bb}")
            return []
        print(f"done: {what} on {where or bb}", file=sys.stderr, flush=True)
        return [json.loads(ln[len("RESULT "):]) for ln in lines]

    if a.interleave:
        if a.repeat > 1:
            print("--repeat is ignored with --interleave (use --steps)", file=sys.stderr)
        rows = run(["--interleave", "--trainers", *a.trainers, "--backbones", *a.backbones], a.backbones[0],
                   " + ".join(a.trainers), " + ".join(a.backbones))
    else:
        best = {}  # (backbone, trainer entry) -> fastest run

        def speed(row):
            return row["train_img_s"] if row.get("train_img_s") is not None else row["eval_img_s"]

        for _ in range(max(1, a.repeat)):
            for bb in a.backbones:
                for tr in a.trainers:
                    for row in run(["--trainer", tr], bb, tr):
                        if (bb, tr) not in best or speed(row) > speed(best[(bb, tr)]):
                            best[(bb, tr)] = row
        rows = [best[(bb, tr)] for bb in a.backbones for tr in a.trainers if (bb, tr) in best]
    report(a, rows)
    return 1 if failed else 0


def precisions(a):
    """steps once per precision: PREC=<p> added to every trainer entry."""
    a.trainers = [with_precision(tr, p) for tr in a.trainers for p in a.precisions]
    return steps(a)


def encoders(a):
    from .bench_encoders import run_encoders
    run_encoders(a)
    return 0


def _cell(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def report(a, rows):
    from tabulate import tabulate

    table = [[r["backbone"], r["trainer"], r["precision"], _cell(r.get("train_img_s"), ".1f"),
              _cell(r.get("train_ms_img"), ".1f"), _cell(r["eval_img_s"], ".1f"), _cell(r["peak_mem_mb"], ".0f"),
              _cell(r["trainable_params"], ",")] for r in rows]
    print(f"device={a.device} classes={a.classes} batch={a.batch} steps={a.steps} "
          f"threads={a.threads or 'default'} opts={' '.join(a.opts) or '-'}")
    print(tabulate(table, headers=["backbone", "trainer", "prec", "train img/s", "train ms/img", "eval img/s",
                                   "peak mem MB", "trainable"], tablefmt="github"))
    if len(a.precisions) > 1 and rows:
        print()
        print("precisions side by side (prec column above: the precision actually used, e.g. fp16 on CPU runs fp32)")
        print(tabulate(*precisions_table(rows, a.precisions), tablefmt="github"))
    write_json(a, rows)


def precisions_table(rows, precs):
    """(table, headers): one line per (backbone, trainer entry without PREC), one column group
    per requested precision."""
    def entry(r):
        return r["method"] + "".join(f"{':' if i == 0 else ','}{k}={v}" for i, (k, v) in enumerate(r["settings"].items()))

    by = {(r["backbone"], entry(r), r["requested_precision"]): r for r in rows}
    table = []
    for bb, name in dict.fromkeys((bb, name) for bb, name, _ in by):
        line = [bb, name]
        for p in precs:
            r = by.get((bb, name, p), {})
            line += [_cell(r.get("train_img_s"), ".2f"), _cell(r.get("eval_img_s"), ".2f"),
                     _cell(r.get("peak_mem_mb"), ".0f")]
        table.append(line)
    heads = ["backbone", "trainer"] + [f"{p} {h}" for p in precs for h in ("train img/s", "eval img/s", "MB")]
    return table, heads


def write_json(a, rows):
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


# ---- command line --------------------------------------------------------------------------------
def _common(p):
    p.add_argument("--backbones", nargs="+", default=["random:tiny", "random:ViT-B/16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (rounds) per entry")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")


def _trainer_flags(p, entries=True):
    if entries:
        p.add_argument("--trainers", nargs="+", default=["ZeroshotCLIP", "CoOp"],
                       help="trainer entries NAME[:KEY=VALUE,...]")
        p.add_argument("--interleave", action="store_true",
                       help="time all entries of all backbones in one process, steps alternating (fair on a "
                            "busy machine; no per-entry peak memory)")
    p.add_argument("--repeat", type=int, default=1, help="runs per entry (round-robin); the fastest is kept")
    p.add_argument("--cached-train-features", action="store_true",
                   help="our trainers train on frozen features, as with DATALOADER.FEATURE_CACHE.TRAIN_VIEWS "
                        "(the features are computed once, untimed; CoOp, KgCoOp, ProGrad, CoCoOp, ZeroshotCLIP)")


def _opts(p):
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config pairs for every run")


def build_parser():
    p = argparse.ArgumentParser(prog="e2mim-benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    s = sub.add_parser("steps", help="train/eval throughput and peak memory per trainer entry")
    _common(s), _trainer_flags(s), _opts(s)
    s = sub.add_parser("precisions", help="steps once per precision, side by side")
    s.add_argument("precisions", nargs="+", choices=PRECISIONS, metavar="PREC", help=" | ".join(PRECISIONS))
    _common(s), _trainer_flags(s), _opts(s)
    s = sub.add_parser("encoders", help="the frozen encoders' forward variants against a matmul")
    _common(s)
    s.add_argument("--compile", action="store_true", help="also time torch.compile")
    s = sub.add_parser("published", help="our CoOp against the published CoOp, step by step")
    s.add_argument("published", nargs="+", metavar="PATH",
                   help="the folders to put on the published code's PYTHONPATH (CoOp, Dassl.pytorch, and a "
                        "folder with Dassl's requirements if they are not installed)")
    _common(s), _trainer_flags(s, entries=False), _opts(s)
    s.add_argument("--precisions", nargs="+", default=[], choices=PRECISIONS,
                   help="the precisions to compare (those the published CoOp accepts)")
    return p


def legacy_parser():
    """The flags of the single-command version (and the internal --single / --worker)."""
    p = argparse.ArgumentParser(prog="e2mim-benchmark", add_help=False)
    _common(p), _trainer_flags(p)
    p.add_argument("--precisions", nargs="+", default=[], choices=PRECISIONS)
    p.add_argument("--published", nargs="+", default=[], metavar="PATH")
    p.add_argument("--encoders", action="store_true")
    p.add_argument("--compile", action="store_true")
    _opts(p)
    # internal: one process of the steps/precisions subcommands, one worker of published
    p.add_argument("--single", action="store_true")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--trainer", default="")
    p.add_argument("--backbone", default="")
    p.add_argument("--tmp", default="")
    p.add_argument("--save-clip", default="")
    return p


def parse_args(argv):
    """The namespace of a subcommand (every attribute present: the legacy parser's defaults
    fill the others); ``command`` is the subcommand, or "_single" / "_worker"."""
    a = legacy_parser().parse_args([])
    if argv and argv[0] in COMMANDS or not argv or argv[0] in ("-h", "--help"):
        parsed = build_parser().parse_args(argv or ["steps"])
        vars(a).update(vars(parsed))
        return a
    vars(a).update(vars(legacy_parser().parse_args(argv)))
    if a.single or a.worker:
        a.command = "_single" if a.single else "_worker"
        return a
    chosen = [c for c, on in (("encoders", a.encoders), ("published", a.published)) if on]
    if a.precisions and not a.published:
        chosen.append("precisions")
    if len(chosen) > 1:
        raise SystemExit(f"e2mim-benchmark: {' and '.join('--' + c for c in chosen)} are separate subcommands "
                         f"now; run them one at a time: " + "; ".join(f"e2mim-benchmark {c} ..." for c in chosen))
    a.command = chosen[0] if chosen else "steps"
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else list(argv))
    return {"_single": measure, "_worker": worker, "steps": steps, "precisions": precisions, "encoders": encoders,
            "published": published}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
