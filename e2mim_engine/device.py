"""Device and precision, decided in one place. Nothing else moves tensors to a GPU by hand or picks dtypes."""
import contextlib
import time
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .utils import logger

PRECISIONS = ("fp32", "fp16", "amp", "bf16")


def select_device(use_cuda=True):
    if use_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """How the frozen CLIP is stored and how forward passes run.

    fp32: everything float32. fp16/bf16: frozen CLIP weights stored in that dtype (LayerNorms
    stay float32, as in CLIP), so activations are computed in it; no loss scaling is needed
    for bf16. amp: float32 weights under autocast (float16 with a GradScaler on CUDA, bfloat16
    on CPU), which casts per op. Learnable parameters, their gradients and the optimizer state
    always stay float32 (a master copy, cast at use), so small SGD steps are not rounded away
    as they are when CoOp trains fp16 context vectors directly (tests/test_perf_precision.py).
    """

    name: str
    device: torch.device

    @property
    def weight_dtype(self):
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.name, torch.float32)

    def autocast(self):
        if self.name != "amp":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self):
        # Loss scaling is only needed for float16 autocast on CUDA.
        if self.name == "amp" and self.device.type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None


_CPU_BF16_SPEEDUP = {}


def cpu_bf16_speedup(size=512, reps=6):
    """How many times faster a size^2 bfloat16 matmul runs than a float32 one on this CPU with
    the current threads, measured once per process (about 0.1 s). Whether bf16 pays off on a
    CPU is not readable from its flags: with avx512_bf16 and no AMX it was 0.6x on one
    machine and 4x on another (1024^2 matmuls, both 2 cores)."""
    key = (size, torch.get_num_threads())
    if key not in _CPU_BF16_SPEEDUP:
        best = {}
        gen = torch.Generator().manual_seed(0)  # never the global stream: runs stay reproducible
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.randn(size, size, generator=gen).to(dtype)
            b = torch.randn(size, size, generator=gen).to(dtype)
            a @ b  # warm-up (oneDNN picks its kernel)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - t0)
            best[dtype] = min(times)
        _CPU_BF16_SPEEDUP[key] = best[torch.float32] / max(best[torch.bfloat16], 1e-9)
    return _CPU_BF16_SPEEDUP[key]


def resolve_precision(name, device, key="PREC"):
    name = str(name).lower()
    if name not in PRECISIONS:
        raise ConfigError(f"Unknown precision '{name}' for {key}; valid: {', '.join(PRECISIONS)}.")
    if name == "fp16" and device.type == "cpu":
        # Many float16 kernels are missing or very slow on CPU; fp32 gives the same
        # numbers a GPU fp16 run approximates. Say so instead of crashing.
        logger.info(f"Note: {key}=fp16 is not supported on CPU; using fp32 instead "
                    f"(use bf16 or amp for reduced precision on CPU)")
        name = "fp32"
    if name in ("bf16", "amp") and device.type == "cpu":
        speedup = cpu_bf16_speedup()
        if speedup < 1.0:
            # The user asked for speed and would get the opposite: say so.
            logger.info(f"Note: {key}={name} computes in bfloat16, which is slower than fp32 on this CPU "
                        f"(a 512^2 matmul runs at {speedup:.2f}x the fp32 speed; cpu capability "
                        f"{torch.backends.cpu.get_cpu_capability()}): use fp32 here for speed.")
        else:
            logger.info(f"{key}={name}: bfloat16 matmuls run at {speedup:.1f}x the fp32 speed on this CPU")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}=bf16 needs a GPU with bfloat16 support; use fp16 or amp.")
    return Precision(name, device)
