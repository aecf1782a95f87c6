"""Throughput and peak memory per trainer on a CLIP shape with random weights.

For each (backbone, trainer) a fresh process builds the trainer exactly as train.py does
(on a synthetic class list, images generated in memory so disk and JPEG decoding are not
timed), runs warm-up steps, then times training steps (the trainer's public train_step:
forward, backward and optimizer step) and evaluation batches (eval_step: model_inference
without autograd).

  e2mim-benchmark --backbones random:tiny random:ViT-B/16 --trainers ZeroshotCLIP CoOp
  e2mim-benchmark --device cuda --classes 1000 --batch 32 --opts TRAINER.COOP.PREC fp16
  e2mim-benchmark --backbones random:ViT-B/16 --repeat 3 \
      --trainers CoOp E2MIM E2MIM:TRAINER.E2MIM.MIX_LEVEL=feature

A trainer entry NAME:KEY=VALUE[,KEY=VALUE...] adds config pairs to that entry only (one
table row per entry). Training time is the median of the timed steps; with --repeat R every
entry runs R times, round-robin, and the fastest run is kept (shared machines).
--interleave times all entries of a backbone in one process with their steps alternating,
which keeps ratios between entries fair when other jobs load the machine (times only).

Peak memory: on CUDA the allocator's peak during the timed steps; on CPU the process's
peak resident set size (includes the Python runtime and the frozen CLIP).

  e2mim-benchmark --trainers CoOp E2MIM --precisions fp32 bf16 amp
  e2mim-benchmark --encoders --backbones random:ViT-B/16 --batch 2 --steps 10 [--compile]
  e2mim-benchmark --published /tmp/CoOp /tmp/Dassl.pytorch [/tmp/deps] --backbones random:ViT-B/16
  e2mim-benchmark --published ... --cached-train-features   # ours on cached training features

--precisions runs every entry once per precision (PREC=<p> on the trainer's own node; an
entry may also say CoOp:PREC=bf16) and adds a table with the precisions side by side.
--encoders times the frozen encoders' forward variants against a 1024^2 fp32 matmul
(bench_encoders). --published times the published CoOp trainer (KaiyangZhou/CoOp on
Dassl.pytorch; the given folders form the PYTHONPATH of its subprocess, nothing else sees
them) against our CoOp, on the same random weights, alternating step by step (two worker
processes answering one step at a time), and prints ours/published ratios.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


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


def _build(a, entry, tmp):
    """A trainer for one entry NAME[:KEY=VALUE,...], built exactly as train.py does."""
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.trainer import build_trainer
    from e2mim_engine.seeding import set_random_seed

    from e2mim_engine.trainer import TRAINER_REGISTRY

    name, _, variant = entry.partition(":")
    extra = [x for kv in variant.split(",") if kv for x in kv.split("=", 1)]
    # PREC=<p> is short for TRAINER.<the trainer's node>.PREC=<p> (what --precisions adds)
    node = getattr(TRAINER_REGISTRY.get(name), "node", None)
    for i in range(0, len(extra), 2):
        if extra[i] == "PREC":
            if node is None:
                raise SystemExit(f"{entry}: trainer {name} has no config node with a PREC key.")
            extra[i] = f"TRAINER.{node}.PREC"
    argv = ["--trainer", name, "--backbone", a.backbone, "--output-dir", os.path.join(tmp, "out"),
            "--seed", "1", "DATASET.NAME", "_BenchClasses", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(a.batch), "USE_CUDA", str(a.device == "cuda"),
            "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "VERBOSE", "False"] + list(a.opts) + extra
    cfg = setup_cfg(build_parser().parse_args(argv))
    set_random_seed(1)
    t = build_trainer(cfg)
    out = {"trainer": entry, "backbone": a.backbone, "device": a.device, "classes": a.classes, "batch": a.batch,
           "precision": getattr(getattr(t, "precision", None), "name", "-"),
           "trainable_params": t.num_trainable_params()}
    return t, cfg, out


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


def peak_memory_mb(device):
    """The allocator's peak on CUDA, the process's peak resident set size on CPU (MiB)."""
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(a, fn):
    import torch

    if a.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if a.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def single(a):
    """One entry in this process: timings and peak memory."""
    import torch

    _setup(a)
    t, cfg, out = _build(a, a.trainer, a.tmp)
    batch = _use_cached_features(a, t, _batch(a, cfg))
    img, B = batch["img"], a.batch
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if t.get_model_names():
        for _ in range(a.warmup):
            t.train_step(batch)
        # median step: robust to other jobs on the machine
        dt = _median([_timed(a, lambda: t.train_step(batch)) for _ in range(a.steps)])
        out["train_img_s"] = B / dt
        out["train_ms_img"] = 1000 * dt / B
    for _ in range(a.warmup):
        t.eval_step(img)
    # one eval mode for all batches: methods that cache class text features reuse them
    dt = _timed(a, lambda: [t.eval_step(img) for _ in range(a.steps)])
    out["eval_img_s"] = B * a.steps / dt
    out["peak_mem_mb"] = peak_memory_mb(dev)
    print("RESULT " + json.dumps(out), flush=True)


def interleaved(a):
    """All entries in one process, their steps alternating (A B C A B C ...), so a machine
    whose load changes during the run slows every entry alike; medians per entry. Peak
    memory cannot be told apart per entry here (all models are resident): "-"."""
    _setup(a)
    runs = []
    for k, entry in enumerate(a.trainers):
        t, cfg, out = _build(a, entry, os.path.join(a.tmp, str(k)))
        runs.append((t, _use_cached_features(a, t, _batch(a, cfg)), out, [], []))
    for t, batch, _, _, _ in runs:
        if t.get_model_names():
            for _ in range(a.warmup):
                t.train_step(batch)
    for _ in range(a.steps):
        for t, batch, _, train_times, _ in runs:
            if t.get_model_names():
                train_times.append(_timed(a, lambda: t.train_step(batch)))
    for t, batch, _, _, _ in runs:
        for _ in range(a.warmup):
            t.eval_step(batch["img"])
    for _ in range(a.steps):
        for t, batch, _, _, eval_times in runs:
            eval_times.append(_timed(a, lambda: t.eval_step(batch["img"])))
    for t, batch, out, train_times, eval_times in runs:
        if train_times:
            out["train_img_s"] = a.batch / _median(train_times)
            out["train_ms_img"] = 1000 * _median(train_times) / a.batch
        out["eval_img_s"] = a.batch / _median(eval_times)
        out["peak_mem_mb"] = None
        print("RESULT " + json.dumps(out), flush=True)


def worker(a):
    """One entry in this process, driven by the parent over stdin (the protocol of
    bench_published, so ours and the published trainer alternate step by step): build, warm
    up, print READY; then answer ``train`` / ``eval`` with ``T <seconds>``; ``done`` prints
    the RESULT line (peak memory over the whole run). ``--save-clip`` writes the frozen CLIP's
    float32 state dict first, for the published side to load."""
    import torch

    _setup(a)
    t, cfg, out = _build(a, a.trainer, a.tmp)
    if a.save_clip:
        torch.save({k: v.float() for k, v in t.model.clip.state_dict().items()}, a.save_clip)
    batch = _use_cached_features(a, t, _batch(a, cfg))
    dev = torch.device(a.device)

    def train_step():
        t.train_step(batch)

    def eval_prepare():
        # as test() does: eval mode, class text features encoded once (not part of a batch's time)
        t.set_model_mode("eval")
        t.eval_step(batch["img"])

    def eval_step():
        t.eval_step(batch["img"])

    for _ in range(a.warmup):
        train_step()
        eval_prepare()
        eval_step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "eval":
            eval_prepare()
        if cmd in ("train", "eval"):
            dt = _timed(a, train_step if cmd == "train" else eval_step)
            print(f"T {dt:.6f}", flush=True)
        elif cmd == "done":
            break
    out["peak_mem_mb"] = peak_memory_mb(dev)
    print("RESULT " + json.dumps(out), flush=True)


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


PUBLISHED_PRECISIONS = ("fp16", "fp32", "amp")  # what CoOp's code accepts (its check_cfg)


def published(a):
    """Our CoOp against the published CoOp trainer, step by step alternating, ``--repeat``
    rounds of ``--steps`` train and eval steps each, for every precision both accept.
    Prints medians and ratios (ours / published; > 1 means ours is faster)."""
    import tempfile

    from tabulate import tabulate

    missing = [p for p in a.published if not os.path.isdir(p)]
    if missing:
        raise SystemExit(f"--published: {', '.join(missing)} is not a folder. Give the folders to put on the "
                         f"published code's PYTHONPATH: a copy of github.com/KaiyangZhou/CoOp, one of "
                         f"github.com/KaiyangZhou/Dassl.pytorch and, if Dassl's requirements (gdown, "
                         f"wilds, pandas, ...) are not installed, a folder holding them.")
    bb = a.backbones[0]
    if len(a.backbones) > 1:
        print(f"--published uses the first backbone only ({bb})", file=sys.stderr)
    precs = [p for p in (a.precisions or ["fp32"]) if p in PUBLISHED_PRECISIONS]
    skipped = [p for p in (a.precisions or []) if p not in PUBLISHED_PRECISIONS]
    if skipped:
        print(f"--published: the published CoOp has no {', '.join(skipped)} (it accepts "
              f"{', '.join(PUBLISHED_PRECISIONS)}); skipped", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in a.published))
    common = ["--device", a.device, "--classes", str(a.classes), "--batch", str(a.batch),
              "--warmup", str(a.warmup), "--threads", str(a.threads)]
    ours_only = ["--cached-train-features"] if a.cached_train_features else []
    table, rows = [], []
    for prec in precs:
        with tempfile.TemporaryDirectory() as tmp:
            clip_file = os.path.join(tmp, "clip.pt")
            ours = _Worker([sys.executable, "-m", "e2mim_tools.benchmark", "--worker", "--trainer",
                            f"CoOp:PREC={prec}", "--backbone", bb, "--tmp", tmp, "--save-clip", clip_file,
                            *common, *ours_only, *(["--opts", *a.opts] if a.opts else [])], f"our CoOp ({prec})",
                           cwd=tmp)
            pub_tmp = os.path.join(tmp, "published")
            os.makedirs(pub_tmp)
            theirs = _Worker([sys.executable, "-m", "e2mim_tools.bench_published", "--clip", clip_file,
                              "--tmp", pub_tmp, "--prec", prec, *common], f"published CoOp ({prec})",
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
        med = {key: _median(v) for key, v in times.items()}
        for w, row in (("ours", row_o), ("theirs", row_t)):
            row.update(backbone=bb, device=a.device, classes=a.classes, batch=a.batch,
                       train_img_s=a.batch / med[(w, "train")], eval_img_s=a.batch / med[(w, "eval")],
                       train_ms_img=1000 * med[(w, "train")] / a.batch)
            rows.append(row)
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
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["random:tiny", "random:ViT-B/16"])
    p.add_argument("--trainers", nargs="+", default=["ZeroshotCLIP", "CoOp"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeat", type=int, default=1, help="runs per entry (round-robin); the fastest is kept")
    p.add_argument("--interleave", action="store_true",
                   help="time all entries of a backbone in one process, steps alternating (fair on a "
                        "busy machine; no per-entry peak memory)")
    p.add_argument("--precisions", nargs="+", default=[], choices=["fp32", "fp16", "amp", "bf16"],
                   help="run every trainer entry once per precision (its node's PREC), shown side by side")
    p.add_argument("--published", nargs="+", default=[], metavar="PATH",
                   help="time the published CoOp (KaiyangZhou/CoOp on Dassl.pytorch) against our CoOp, "
                        "alternating step by step: the folders to put on its PYTHONPATH (CoOp, Dassl.pytorch, "
                        "and a folder with Dassl's requirements if they are not installed)")
    p.add_argument("--encoders", action="store_true",
                   help="time the frozen encoders' variants (CLIP's forward, fused SDPA path, channels-last, "
                        "torch.compile with --compile) against a 1024^2 fp32 matmul, interleaved")
    p.add_argument("--compile", action="store_true", help="with --encoders: also time torch.compile")
    p.add_argument("--cached-train-features", action="store_true",
                   help="our trainers train on frozen features, as with DATALOADER.FEATURE_CACHE.TRAIN_VIEWS "
                        "(the features are computed once, untimed; CoOp, KgCoOp, ProGrad, CoCoOp, ZeroshotCLIP)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config pairs for every run")
    # internal: run one combination in this process
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trainer", default="", help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--save-clip", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.single:
        return interleaved(a) if a.interleave else single(a)
    if a.worker:
        return worker(a)
    if a.encoders:
        from .bench_encoders import run_encoders
        return run_encoders(a)
    if a.published:
        return published(a)
    if a.precisions:
        # one entry per (trainer entry, precision); PREC=<p> goes to the trainer's own node
        a.trainers = [f"{tr}{',' if ':' in tr else ':'}PREC={p}" for tr in a.trainers for p in a.precisions]

    import tempfile

    failed = []  # the table still shows the others; the exit status says something failed

    def run(trainer_args, bb, what):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "e2mim_tools.benchmark", "--single", *trainer_args, "--backbone", bb,
                   "--tmp", tmp, "--device", a.device, "--classes", str(a.classes), "--batch", str(a.batch),
                   "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
            if a.cached_train_features:
                cmd.append("--cached-train-features")
            if a.opts:
                cmd += ["--opts"] + a.opts
            r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode or not lines:
            print(f"{what} on {bb} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
            failed.append(f"{what} on {bb}")
            return []
        print(f"done: {what} on {bb}", file=sys.stderr, flush=True)
        return [json.loads(ln[len("RESULT "):]) for ln in lines]

    def run_one(tr, bb):
        rows = run(["--trainer", tr], bb, tr)
        return rows[0] if rows else None

    if a.interleave:
        if a.repeat > 1:
            print("--repeat is ignored with --interleave (use --steps)", file=sys.stderr)
        rows = [r for bb in a.backbones
                for r in run(["--interleave", "--trainers", *a.trainers], bb, " + ".join(a.trainers))]
        report(a, rows)
        return 1 if failed else 0

    best = {}  # (backbone, trainer entry) -> fastest run
    for _ in range(max(1, a.repeat)):
        for bb in a.backbones:
            for tr in a.trainers:
                row = run_one(tr, bb)
                if row is None:
                    continue
                key = (bb, tr)
                speed = row.get("train_img_s", row["eval_img_s"])
                if key not in best or speed > best[key].get("train_img_s", best[key]["eval_img_s"]):
                    best[key] = row
    rows = [best[(bb, tr)] for bb in a.backbones for tr in a.trainers if (bb, tr) in best]
    report(a, rows)
    return 1 if failed else 0


def report(a, rows):
    from tabulate import tabulate

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    table = [[r["backbone"], r["trainer"], r["precision"], f(r.get("train_img_s"), ".1f"),
              f(r.get("train_ms_img"), ".1f"), f(r["eval_img_s"], ".1f"), f(r["peak_mem_mb"], ".0f"),
              f(r["trainable_params"], ",")] for r in rows]
    print(f"device={a.device} classes={a.classes} batch={a.batch} steps={a.steps} "
          f"threads={a.threads or 'default'} opts={' '.join(a.opts) or '-'}")
    print(tabulate(table, headers=["backbone", "trainer", "prec", "train img/s", "train ms/img", "eval img/s",
                                   "peak mem MB", "trainable"], tablefmt="github"))
    if a.precisions and len(a.precisions) > 1 and rows:
        # the same entries side by side, one column group per precision
        by = {(r["backbone"], r["trainer"].rsplit("PREC=", 1)[0].rstrip(",:"), r["trainer"].rsplit("PREC=", 1)[-1]): r
              for r in rows}
        names = list(dict.fromkeys((bb, tr) for bb, tr, _ in by))
        side = []
        for bb, tr in names:
            line = [bb, tr]
            for p in a.precisions:
                r = by.get((bb, tr, p), {})
                line += [f(r.get("train_img_s"), ".2f"), f(r.get("eval_img_s"), ".2f"), f(r.get("peak_mem_mb"), ".0f")]
            side.append(line)
        heads = ["backbone", "trainer"] + [f"{p} {h}" for p in a.precisions
                                           for h in ("train img/s", "eval img/s", "MB")]
        print()
        print("precisions side by side (prec column above: the precision actually used, e.g. fp16 on CPU runs fp32)")
        print(tabulate(side, headers=heads, tablefmt="github"))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
