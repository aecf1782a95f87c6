"""Throughput and peak memory per trainer on a CLIP shape with random weights.

For each (backbone, trainer) a fresh process builds the trainer exactly as train.py does
(on a synthetic class list, images generated in memory so disk and JPEG decoding are not
timed), runs warm-up steps, then times training steps (forward_backward: forward, backward
and optimizer step) and evaluation batches (model_inference without autograd).

  python scripts/benchmark.py --backbones random:tiny random:ViT-B/16 --trainers ZeroshotCLIP CoOp
  python scripts/benchmark.py --device cuda --classes 1000 --batch 32 --opts TRAINER.COOP.PREC fp16

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def single(a):
    import torch

    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.data import DATASET_REGISTRY, DatasetBase, Datum
    from e2mim_engine.trainer import build_trainer
    from e2mim_engine.utils import set_random_seed, setup_logger

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
    import logging
    logging.getLogger("e2mim").setLevel(logging.WARNING)
    argv = ["--trainer", a.trainer, "--backbone", a.backbone, "--output-dir", os.path.join(a.tmp, "out"),
            "--seed", "1", "DATASET.NAME", "_BenchClasses", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(a.batch), "USE_CUDA", str(a.device == "cuda"),
            "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "VERBOSE", "False"] + list(a.opts)
    cfg = setup_cfg(build_parser().parse_args(argv))
    set_random_seed(1)
    dev = torch.device(a.device)
    t = build_trainer(cfg)
    res = cfg.INPUT.SIZE[0]
    B = a.batch
    img = torch.randn(B, 3, res, res, device=dev)
    # anchors then partners of another class: valid for pair-based samplers too
    lab = torch.cat([torch.arange(B // 2), torch.arange(B - B // 2) + 1]) % C
    batch = {"img": img, "label": lab, "index": torch.arange(B), "domain": torch.zeros(B, dtype=torch.long)}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out = {"trainer": a.trainer, "backbone": a.backbone, "device": a.device, "classes": C, "batch": B,
           "precision": getattr(getattr(t, "precision", None), "name", "-")}
    trainable = sum(p.numel() for m in t._models.values() for p in m.parameters() if p.requires_grad)
    out["trainable_params"] = trainable
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if t._models:
        t.set_model_mode("train")
        t.epoch, t.batch_idx, t.num_batches = 0, 0, 1
        for _ in range(a.warmup):
            t.forward_backward(batch)
        sync()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            t.forward_backward(batch)
        sync()
        dt = (time.perf_counter() - t0) / a.steps
        out["train_img_s"] = B / dt
        out["train_ms_img"] = 1000 * dt / B
    t.set_model_mode("eval")
    with torch.no_grad():
        for _ in range(a.warmup):
            t.model_inference(img)
        sync()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            # each eval batch re-enters eval mode so cached text features are recomputed per
            # batch only where a method cannot cache them
            t.model_inference(img)
        sync()
        out["eval_img_s"] = B * a.steps / (time.perf_counter() - t0)
    if dev.type == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config pairs for every run")
    # internal: run one combination in this process
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trainer", default="", help=argparse.SUPPRESS)
    p.add_argument("--backbone", default="", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.single:
        return single(a)

    import tempfile

    from tabulate import tabulate

    rows = []
    for bb in a.backbones:
        for tr in a.trainers:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, os.path.abspath(__file__), "--single", "--trainer", tr, "--backbone", bb,
                       "--tmp", tmp, "--device", a.device, "--classes", str(a.classes), "--batch", str(a.batch),
                       "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
                if a.opts:
                    cmd += ["--opts"] + a.opts
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            if r.returncode or not line:
                print(f"{tr} on {bb} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[0][len("RESULT "):]))
            print(f"done: {tr} on {bb}", file=sys.stderr, flush=True)

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
