"""e2mim-doctor: does this machine run every method in every precision?

  e2mim-doctor                      # CPU, or the GPU when one is visible
  e2mim-doctor --device cuda:1 --quick
  e2mim-doctor --trainers CoOp MaPLe --shapes tiny --precisions fp32 bf16 --json doctor.json

First the stack: Python, torch, CUDA, cuDNN, the GPU's name and memory, and the installed
version of every package constraints.txt pins (a mismatch is reported, not failed). Then, for
every registered trainer on randomly initialised CLIPs of the tiny and the ViT-B/16 shape (no
dataset, no download: a synthetic class list and one fixed batch of random images made in
memory), and in each precision:

  * a measured probe first: a miniature of CLIP's residual block (LayerNorm in float32,
    attention, MLP) forward and backward into a float32 leaf, in that precision on this
    device. A precision whose probe raises, or gives non-finite values or values more than 5%
    off fp32's, is reported as unsupported, as is one the engine runs as another (fp16 on a
    CPU runs fp32), with the probe's speed against fp32;
  * a few training steps on the fixed batch: every loss finite, the last below the first,
    every learnable parameter (and its gradient) still float32 (steps amp's GradScaler
    skips on an overflow are run again);
  * an evaluation of the batch: logits [batch, classes], finite;
  * a checkpoint (the trainer's own save_model): the files hold every learnable parameter,
    in float32, and besides them only the registered module's buffers (no frozen weight); a
    freshly built trainer loads them (load_model) and gives the same logits.

The table: one row per shape x trainer, a cell per precision: ok with the median step time
(steps after the first) and the peak memory of the check (CUDA: the allocator's peak; CPU:
the process's peak resident set size, which includes Python, torch and the frozen CLIP), or
failed / unsupported with a one-line reason. The exit status is 0 only if no check failed.
--quick runs the tiny shape for every trainer and the ViT-B/16 shape for CoOp only, with
fewer steps; --json writes every cell with its numbers.
"""
import argparse
import gc
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
import traceback

SHAPES = ("tiny", "ViT-B/16")
QUICK_FULL_SHAPE = "tiny"        # --quick: every trainer on this shape ...
QUICK_TRAINERS_LARGE = ("CoOp",)  # ... and only these on the others
DATASET = "_DoctorClasses"


# ---- the stack -------------------------------------------------------------------------------
def constraints_file():
    """constraints.txt of the checkout this package runs from, or None (installed elsewhere)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(here, "constraints.txt")
    return path if os.path.isfile(path) else None


def read_pins(path):
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_norm(name)] = (name.strip(), version.strip())
    return pins


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _base_version(v):
    # torch reports its build as a local version (2.14.1+cu130); the pin names the release
    return v.split("+", 1)[0] if v else v


def direct_requirements():
    """Names of the packages this project requires (its metadata: setup.py's install_requires
    and the test extra), normalised."""
    try:
        reqs = importlib.metadata.requires("e2mim") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [_norm(re.split(r"[ ;<>=!~\[]", r, 1)[0]) for r in reqs]


def pin_report(path):
    """(rows [name, pinned, installed, state] for the direct requirements, summary line of the
    other pins). state: ok, differs, not installed."""
    pins = read_pins(path)
    rows, other_bad, other_missing = [], [], 0
    direct = direct_requirements()
    for key, (name, pinned) in sorted(pins.items()):
        have = _installed(name)
        state = "not installed" if have is None else ("ok" if _base_version(have) == pinned else "differs")
        if key in direct:
            rows.append([name, pinned, have or "-", state])
        elif state == "differs":
            other_bad.append(f"{name} {have} (pinned {pinned})")
        elif state == "not installed":
            other_missing += 1
    others = len(pins) - len(rows)
    summary = (f"{others} other pins (dependencies of these): "
               + (f"{len(other_bad)} differ: {', '.join(other_bad)}" if other_bad else "none differs")
               + (f"; {other_missing} not installed (e.g. CUDA wheels on a machine that does not use them)"
                  if other_missing else ""))
    return rows, summary


def stack_report(device):
    """Lines describing Python, torch, the accelerator and the pins."""
    import torch
    from tabulate import tabulate

    lines = [f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}",
             f"torch {torch.__version__}, CUDA build {torch.version.cuda or '-'}, "
             f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '-'}, "
             f"{torch.get_num_threads()} CPU threads, cpu capability {torch.backends.cpu.get_cpu_capability()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability "
                         f"{p.major}.{p.minor}, {p.multi_processor_count} SMs, bf16 "
                         f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        lines.append("no CUDA device visible" + (" (torch is a CPU build)" if not torch.version.cuda else ""))
    lines.append(f"checking on {device}")
    path = constraints_file()
    if path is None:
        lines.append("constraints.txt: not found (the package is not run from its checkout); pins not compared")
    else:
        rows, summary = pin_report(path)
        lines.append(f"pins ({path}) of the packages this project requires:")
        lines.append(tabulate(rows, headers=["package", "pinned", "installed", "state"], tablefmt="github"))
        lines.append(summary)
    return lines


# ---- the precision probe -----------------------------------------------------------------------
def _probe_once(prec, device, gen):
    """A miniature of one of CLIP's residual attention blocks in ``prec`` on ``device``:
    forward and backward into a float32 leaf. Returns (output, leaf gradient)."""
    import torch
    import torch.nn.functional as F

    from e2mim_engine.device import Precision

    p = Precision(prec, device)
    dt = p.weight_dtype
    d, n = 512, 128
    w = [(torch.randn(d, d, generator=gen) / d ** 0.5).to(device, dt) for _ in range(4)]
    x = torch.randn(2, n, d, generator=gen).to(device).requires_grad_()  # the float32 "prompt"
    with p.autocast():
        h = F.layer_norm(x, (d,)).to(dt)  # CLIP's LayerNorm computes in float32
        q, k, v = (h @ w[i] for i in range(3))
        a = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        y = x + (F.gelu(a @ w[3])).float()
        loss = y.float().pow(2).mean()
    loss.backward()
    return y.detach().float(), x.grad


def probe_precision(prec, device, reps=5):
    """(supported, note): runs the probe in ``prec`` and in fp32, alternating (a busy machine
    slows both alike); supported when it runs and gives finite values within 5% of fp32's.
    The note gives its speed against fp32 (the best of ``reps`` runs each)."""
    import torch

    def run(name):
        _sync(device)
        t0 = time.perf_counter()
        out = _probe_once(name, device, torch.Generator().manual_seed(0))
        _sync(device)
        return out, time.perf_counter() - t0

    best = {prec: float("inf"), "fp32": float("inf")}
    try:
        for _ in range(reps):
            for name in dict.fromkeys([prec, "fp32"]):
                out, dt = run(name)
                best[name] = min(best[name], dt)
                if name == prec:
                    y, g = out
                if name == "fp32":
                    y32 = out[0]
    except Exception as e:  # noqa: BLE001 - any failure means: not on this device
        return False, f"probe failed: {_one_line(e)}"
    if not (torch.isfinite(y).all() and torch.isfinite(g).all()):
        return False, "probe gave non-finite values"
    err = float((y - y32).abs().max() / y32.abs().max())
    if err > 0.05:
        return False, f"probe off by {err:.1%} of fp32's output"
    return True, "probe: reference" if prec == "fp32" else f"probe {best['fp32'] / best[prec]:.2f}x fp32 speed"


# ---- one cell: a trainer in a precision on a shape ---------------------------------------------
class CheckFailed(Exception):
    pass


def _one_line(e, limit=160):
    text = f"{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device):
    import torch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: reset the process's peak RSS (VmHWM), so the peak is this check's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_mb(device):
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(trainer, shape, prec, device, out, classes, batch):
    """A trainer built as train.py builds it, on the synthetic class list, in ``prec``."""
    from e2mim_engine.cli import build_parser, setup_cfg
    from e2mim_engine.seeding import set_random_seed
    from e2mim_engine.trainer import TRAINER_REGISTRY, build_trainer

    node = TRAINER_REGISTRY.get(trainer).node
    argv = ["--trainer", trainer, "--backbone", f"random:{shape}", "--output-dir", out, "--seed", "1",
            "DATASET.NAME", DATASET, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
            "USE_CUDA", str(device.type == "cuda"), f"TRAINER.{node}.PREC", prec,
            # Adam: steps of a set size whatever the gradient's scale, so a few of them lower
            # the loss on the fixed batch in every precision (a float32 update must survive
            # the cast of the prompt to fp16/bf16 at use).
            "OPTIM.NAME", "adam", "OPTIM.LR", "0.002", "OPTIM.WARMUP_EPOCH", "0", "VERBOSE", "False"]
    cfg = setup_cfg(build_parser().parse_args(argv))
    set_random_seed(1)
    with _on_device(device):
        return build_trainer(cfg)


class _on_device:
    """The engine picks "cuda" (the current device); cuda:N becomes the current device here."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch
        if self.device.type == "cuda" and self.device.index is not None:
            self.prev = torch.cuda.current_device()
            torch.cuda.set_device(self.device)

    def __exit__(self, *exc):
        import torch
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.prev)


def fixed_batch(classes, batch, device, size=224):
    """One batch of random images (seeded on its own generator) and labels: anchors then
    partners of another class, so pair-based samplers' trainers get valid pairs."""
    import torch

    gen = torch.Generator().manual_seed(0)
    img = torch.randn(batch, 3, size, size, generator=gen).to(device)
    lab = (torch.cat([torch.arange(batch // 2), torch.arange(batch - batch // 2) + 1]) % classes).to(device)
    return {"img": img, "label": lab, "index": torch.arange(batch), "domain": torch.zeros(batch, dtype=torch.long)}


def learnable(t):
    """{model name: [(parameter name, parameter)]} of the trainable parameters."""
    return {name: [(n, p) for n, p in t._models[name].named_parameters() if p.requires_grad]
            for name in t.get_model_names()}


def check_float32(t, when):
    import torch

    for name, params in learnable(t).items():
        for n, p in params:
            if p.dtype != torch.float32:
                raise CheckFailed(f"{name}.{n} is {p.dtype} {when} (learnable parameters stay float32)")
            if p.grad is not None and p.grad.dtype != p.dtype:
                raise CheckFailed(f"the gradient of {name}.{n} is {p.grad.dtype} {when}")


def train_steps(t, batch, steps, device, max_skipped=16):
    """``steps`` updates on the same batch: (losses, step times in s, steps the GradScaler
    skipped). Under amp on CUDA the scaler skips the steps whose scaled gradient overflowed
    (its scale starts at 2^16 and halves each time); those are run again, up to max_skipped."""
    import math

    t.set_model_mode("train")
    t.epoch, t.batch_idx, t.num_batches = 0, 0, 1
    t.before_epoch()
    losses, times, skipped = [], [], 0
    while len(losses) < steps + skipped:
        scale = t.scaler.get_scale() if t.scaler is not None else None
        _sync(device)
        t0 = time.perf_counter()
        summary = t.forward_backward(batch)
        _sync(device)
        times.append(time.perf_counter() - t0)
        loss = float(summary["loss"])
        if not math.isfinite(loss):
            raise CheckFailed(f"loss {loss} at step {len(losses) + 1}")
        losses.append(loss)
        if scale is not None and t.scaler.get_scale() < scale:
            skipped += 1
            if skipped > max_skipped:
                raise CheckFailed(f"the GradScaler skipped {skipped} steps: the gradients stay infinite or NaN")
    if steps > 1 and not losses[-1] < losses[0]:
        raise CheckFailed(f"loss did not decrease on a fixed batch: {' -> '.join(f'{x:.4f}' for x in losses)}")
    return losses, times, skipped


def evaluate(t, batch, classes):
    import torch

    t.set_model_mode("eval")
    with torch.no_grad():
        logits = t.model_inference(batch["img"]).float()
    if tuple(logits.shape) != (batch["img"].shape[0], classes):
        raise CheckFailed(f"logits of shape {tuple(logits.shape)}, expected {(batch['img'].shape[0], classes)}")
    if not torch.isfinite(logits).all():
        raise CheckFailed("non-finite logits in evaluation")
    return logits


def check_checkpoint(t, directory):
    """Save with the trainer's save_model; every file holds the learnable parameters (float32)
    and no frozen one. Returns the epoch saved."""
    import torch

    from e2mim_engine.checkpoint import epoch_file, load_checkpoint

    t.save_model(0, directory)
    for name, params in learnable(t).items():
        module = t._models[name]
        state = load_checkpoint(os.path.join(directory, name, epoch_file(1)))["state_dict"]
        frozen = sorted(set(n for n, p in module.named_parameters() if not p.requires_grad) & set(state))
        if frozen:
            raise CheckFailed(f"the checkpoint of {name} holds frozen tensors: {frozen[:3]}")
        missing = [n for n, _ in params if n not in state]
        if missing:
            raise CheckFailed(f"the checkpoint of {name} lacks learnable {missing[:3]}")
        buffers = set(n for n, _ in module.named_buffers())
        other = sorted(k for k in state if k not in buffers and k not in dict(params))
        if other:
            raise CheckFailed(f"the checkpoint of {name} holds tensors that are neither learnable nor buffers: "
                              f"{other[:3]}")
        not32 = [n for n, _ in params if state[n].dtype != torch.float32]
        if not32:
            raise CheckFailed(f"the checkpoint of {name} holds {not32[0]} as {state[not32[0]].dtype}")
    return 1


def check_cell(trainer, shape, prec, device, steps, classes, batch_size, probes, traceback_on=False):
    """One trainer in one precision on one shape: a dict with status (ok / failed /
    unsupported), reason, step_ms, eval_ms, peak_mb, losses."""
    import torch

    row = {"trainer": trainer, "shape": shape, "precision": prec, "device": str(device)}
    if prec not in probes:
        probes[prec] = probe_precision(prec, device)
    supported, note = probes[prec]
    row["probe"] = note
    if not supported:
        return dict(row, status="unsupported", reason=note)
    t = t2 = None
    try:
        with tempfile.TemporaryDirectory(prefix="e2mim-doctor-") as tmp:
            t = build(trainer, shape, prec, device, os.path.join(tmp, "a"), classes, batch_size)
            used = t.precision.name
            if used != prec:
                return dict(row, status="unsupported", reason=f"the engine runs {prec} as {used} on {device.type} "
                                                              f"({note})")
            batch = fixed_batch(classes, batch_size, device, t.cfg.INPUT.SIZE[0])
            _peak_reset(device)
            with _on_device(device):
                if t.get_model_names():
                    check_float32(t, "after building")
                    losses, times, row["scaler_skipped"] = train_steps(t, batch, steps, device)
                    check_float32(t, "after training")
                    row["losses"] = losses
                    row["step_ms"] = 1000 * statistics.median(times[1:] or times)
                logits = evaluate(t, batch, classes)  # first call: class texts encoded, kernels chosen
                _sync(device)
                t0 = time.perf_counter()
                evaluate(t, batch, classes)
                _sync(device)
                row["eval_ms"] = 1000 * (time.perf_counter() - t0)
                row["peak_mb"] = _peak_mb(device)
                if t.get_model_names():
                    ckpt = os.path.join(tmp, "ckpt")
                    epoch = check_checkpoint(t, ckpt)
                    t2 = build(trainer, shape, prec, device, os.path.join(tmp, "b"), classes, batch_size)
                    t2.load_model(ckpt, epoch=epoch)
                    again = evaluate(t2, batch, classes)
                    diff = float((again - logits).abs().max())
                    tol = (1e-5 if prec == "fp32" else 1e-2) * max(1.0, float(logits.abs().max()))
                    if not diff <= tol:
                        raise CheckFailed(f"the reloaded checkpoint gives other logits (max |diff| {diff:.3g})")
        return dict(row, status="ok", reason="")
    except Exception as e:  # noqa: BLE001 - the table reports it and the next cell runs
        if traceback_on:
            traceback.print_exc()
        return dict(row, status="failed", reason=_one_line(e))
    finally:
        del t, t2
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---- the command -------------------------------------------------------------------------------
def cell_text(r, note=None):
    if r["status"] == "ok":
        step = f"{r['step_ms']:.0f} ms/step" if "step_ms" in r else f"eval {r['eval_ms']:.0f} ms"
        skipped = f", {r['scaler_skipped']} skipped by the GradScaler" if r.get("scaler_skipped") else ""
        return f"ok {step}, {r['peak_mb']:.0f} MB{skipped}"
    return f"{r['status']} [{note}]" if note else f"{r['status']}: {r['reason']}"


def render(rows, precisions):
    """The table (a cell per precision) and its notes: one per distinct reason of a failed or
    unsupported cell, numbered in the cells."""
    from tabulate import tabulate

    notes = {}
    for r in rows:
        if r["status"] != "ok":
            notes.setdefault(f"{r['status']}: {r['reason']}", len(notes) + 1)
    by = {(r["shape"], r["trainer"], r["precision"]): r for r in rows}
    keys = list(dict.fromkeys((r["shape"], r["trainer"]) for r in rows))
    table = []
    for s, tr in keys:
        line = [s, tr]
        for p in precisions:
            r = by.get((s, tr, p))
            line.append("-" if r is None else cell_text(r, notes.get(f"{r['status']}: {r['reason']}")))
        table.append(line)
    text = tabulate(table, headers=["shape", "trainer"] + list(precisions), tablefmt="github")
    return text + "".join(f"\n[{n}] {reason}" for reason, n in notes.items())


def plan(a, trainers):
    """(shape, trainer) pairs to check."""
    pairs = []
    for shape in a.shapes:
        for tr in trainers:
            if a.quick and shape != QUICK_FULL_SHAPE and tr not in QUICK_TRAINERS_LARGE:
                continue
            pairs.append((shape, tr))
    return pairs


def parse_args(argv=None):
    from e2mim_engine.device import PRECISIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: cuda when visible, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help=f"every trainer on {QUICK_FULL_SHAPE}, only {', '.join(QUICK_TRAINERS_LARGE)} on the other "
                        f"shapes, 3 steps")
    p.add_argument("--trainers", nargs="+", default=[], help="default: every registered trainer")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="random CLIP shapes (e2mim_clip.loader)")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=0, help="training steps per check (default 5, --quick 3)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--traceback", action="store_true", help="print the traceback of every failed check")
    p.add_argument("--json", default="", help="also write every cell (and the stack) to this JSON file")
    a = p.parse_args(argv)
    a.steps = a.steps or (3 if a.quick else 5)
    if a.steps < 2:
        p.error("--steps must be >= 2 (the loss must fall from the first step to the last)")
    if a.batch < 2:
        p.error("--batch must be >= 2 (pair-based trainers need a pair)")
    if a.classes < 2:
        p.error("--classes must be >= 2")
    return a


def resolve_device(name):
    import torch

    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name}: not a device; use cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: the engine runs on cpu or cuda only.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {name}: no CUDA device is visible to torch {torch.__version__} "
                             f"(CUDA build {torch.version.cuda or 'none: a CPU build'}). Check nvidia-smi and "
                             f"CUDA_VISIBLE_DEVICES, or run with --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SystemExit(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return device


def main(argv=None):
    import logging

    import e2mim_datasets  # noqa: F401  (registers the dataset zoo)
    import e2mim_trainers  # noqa: F401  (registers every method)
    from e2mim_engine.trainer import TRAINER_REGISTRY
    from e2mim_engine.utils import setup_logger

    from .benchmark import placeholder_dataset

    a = parse_args(argv)
    device = resolve_device(a.device)
    trainers = a.trainers or TRAINER_REGISTRY.names()
    for tr in trainers:
        TRAINER_REGISTRY.get(tr)  # an unknown name: the registry's message, before any work
    placeholder_dataset(DATASET, a.classes)
    log = logging.getLogger("e2mim")
    level = log.level
    setup_logger(None)
    log.setLevel(logging.WARNING)  # the trainers' INFO lines would bury the table
    try:
        return run_checks(a, device, trainers)
    finally:
        log.setLevel(level)


def run_checks(a, device, trainers):
    t_start = time.perf_counter()
    stack = stack_report(device)
    print("\n".join(stack), flush=True)
    rows, probes = [], {}
    pairs = plan(a, trainers)
    for shape, tr in pairs:
        for prec in a.precisions:
            r = check_cell(tr, shape, prec, device, a.steps, a.classes, a.batch, probes, a.traceback)
            rows.append(r)
            print(f"  {shape:9s} {tr:13s} {prec:5s} {cell_text(r)}", file=sys.stderr, flush=True)  # progress
    wall = time.perf_counter() - t_start
    failed = [r for r in rows if r["status"] == "failed"]
    print()
    print(f"e2mim-doctor on {device}: {len(pairs)} trainer x shape pairs, precisions {' '.join(a.precisions)}, "
          f"{a.steps} steps of batch {a.batch} on {a.classes} classes ({'--quick' if a.quick else 'full'})")
    print(render(rows, a.precisions))
    print("peak memory: " + ("the CUDA allocator's peak during the steps and the evaluation" if device.type == "cuda"
                             else "the process's peak resident set size during the steps and the evaluation "
                                  "(includes Python, torch and the frozen CLIP)"))
    count = {k: sum(r["status"] == k for r in rows) for k in ("ok", "unsupported", "failed")}
    print(f"{count['ok']} ok, {count['unsupported']} unsupported, {count['failed']} failed "
          f"({len(rows)} checks, {wall:.0f} s): " + ("FAILED" if failed else "all supported checks pass"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"stack": stack, "device": str(device), "quick": a.quick, "steps": a.steps,
                       "classes": a.classes, "batch": a.batch, "wall_s": wall, "cells": rows}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
