"""Throughput and peak memory per trainer on a CLIP shape with random weights.

For each (backbone, trainer) a fresh process builds the trainer exactly as train.py does
(on a synthetic class list, images generated in memory so disk and JPEG decoding are not
timed), runs warm-up steps, then times training steps (forward_backward: forward, backward
and optimizer step) and evaluation batches (model_inference without autograd).

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
    from e2mim_engine.data import DATASET_REGISTRY, DatasetBase, Datum
    from e2mim_engine.utils import setup_logger

    C = a.classes

    class _BenchClasses(DatasetBase):
        """C classes with 2 placeholder items each; images never read."""

        def __init__(self, cfg):
            items = [Datum(f"/nonexistent/{i}.jpg", i % C, classname=f"class {i % C}") for i in range(2 * C)]
            super().__init__(train_x=items, val=items[:C], test=items[:C])

    if "_BenchClasses" not in DATASET_REGISTRY:
        DATASET_REGISTRY.register(_BenchClasses)
    torch.set_num_threads(a.threads or torch.get_num_threads())
    setup_logger(None)
    logging.getLogger("e2mim").setLevel(logging.WARNING)


def _build(a, entry, tmp):
    """A trainer for one entry NAME[:KEY=VALUE,...], built exactly as train.py does."""
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.trainer import build_trainer
    from e2mim_engine.seeding import set_random_seed

    name, _, variant = entry.partition(":")
    extra = [x for kv in variant.split(",") if kv for x in kv.split("=", 1)]
    argv = ["--trainer", name, "--backbone", a.backbone, "--output-dir", os.path.join(tmp, "out"),
            "--seed", "1", "DATASET.NAME", "_BenchClasses", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(a.batch), "USE_CUDA", str(a.device == "cuda"),
            "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "VERBOSE", "False"] + list(a.opts) + extra
    cfg = setup_cfg(build_parser().parse_args(argv))
    set_random_seed(1)
    t = build_trainer(cfg)
    out = {"trainer": entry, "backbone": a.backbone, "device": a.device, "classes": a.classes, "batch": a.batch,
           "precision": getattr(getattr(t, "precision", None), "name", "-"),
           "trainable_params": sum(p.numel() for m in t._models.values() for p in m.parameters() if p.requires_grad)}
    return t, cfg, out


def _batch(a, cfg):
    import torch

    res, B, C = cfg.INPUT.SIZE[0], a.batch, a.classes
    img = torch.randn(B, 3, res, res, device=torch.device(a.device))
    # anchors then partners of another class: valid for pair-based samplers too
    lab = torch.cat([torch.arange(B // 2), torch.arange(B - B // 2) + 1]) % C
    return {"img": img, "label": lab, "index": torch.arange(B), "domain": torch.zeros(B, dtype=torch.long)}


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
    batch = _batch(a, cfg)
    img, B = batch["img"], a.batch
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if t._models:
        t.set_model_mode("train")
        t.epoch, t.batch_idx, t.num_batches = 0, 0, 1
        for _ in range(a.warmup):
            t.forward_backward(batch)
        # median step: robust to other jobs on the machine
        dt = _median([_timed(a, lambda: t.forward_backward(batch)) for _ in range(a.steps)])
        out["train_img_s"] = B / dt
        out["train_ms_img"] = 1000 * dt / B
    t.set_model_mode("eval")
    with torch.no_grad():
        for _ in range(a.warmup):
            t.model_inference(img)
        # one eval mode for all batches: methods that cache class text features reuse them
        dt = _timed(a, lambda: [t.model_inference(img) for _ in range(a.steps)])
        out["eval_img_s"] = B * a.steps / dt
    if dev.type == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


def interleaved(a):
    """All entries in one process, their steps alternating (A B C A B C ...), so a machine
    whose load changes during the run slows every entry alike; medians per entry. Peak
    memory cannot be told apart per entry here (all models are resident): "-"."""
    import torch

    _setup(a)
    runs = []
    for k, entry in enumerate(a.trainers):
        t, cfg, out = _build(a, entry, os.path.join(a.tmp, str(k)))
        runs.append((t, _batch(a, cfg), out, [], []))
    for t, batch, _, _, _ in runs:
        if t._models:
            t.set_model_mode("train")
            t.epoch, t.batch_idx, t.num_batches = 0, 0, 1
            for _ in range(a.warmup):
                t.forward_backward(batch)
    for _ in range(a.steps):
        for t, batch, _, train_times, _ in runs:
            if t._models:
                train_times.append(_timed(a, lambda: t.forward_backward(batch)))
    for t, *_ in runs:
        t.set_model_mode("eval")
    with torch.no_grad():
        for t, batch, _, _, _ in runs:
            for _ in range(a.warmup):
                t.model_inference(batch["img"])
        for _ in range(a.steps):
            for t, batch, _, _, eval_times in runs:
                eval_times.append(_timed(a, lambda: t.model_inference(batch["img"])))
    for t, batch, out, train_times, eval_times in runs:
        if train_times:
            out["train_img_s"] = a.batch / _median(train_times)
            out["train_ms_img"] = 1000 * _median(train_times) / a.batch
        out["eval_img_s"] = a.batch / _median(eval_times)
        out["peak_mem_mb"] = None
        print("RESULT " + json.dumps(out), flush=True)


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
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config pairs for every run")
    # internal: run one combination in this process
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trainer", default="", help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.single:
        return interleaved(a) if a.interleave else single(a)

    import tempfile

    def run(trainer_args, bb, what):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "e2mim_tools.benchmark", "--single", *trainer_args, "--backbone", bb,
                   "--tmp", tmp, "--device", a.device, "--classes", str(a.classes), "--batch", str(a.batch),
                   "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
            if a.opts:
                cmd += ["--opts"] + a.opts
            r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode or not lines:
            print(f"{what} on {bb} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
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
        return report(a, rows)

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
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
