"""Device and precision, decided in one place. Nothing else moves tensors to a GPU by hand or picks dtypes."""
import contextlib
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


def cpu_has_amx():
    """Whether this CPU has AMX bfloat16 matrix units (Sapphire Rapids and later). Without
    them oneDNN runs bfloat16 GEMMs on AVX-512 (or emulates them), usually slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)  # other systems: ask torch
    return bool(check()) if check is not None else False


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
    if name in ("bf16", "amp") and device.type == "cpu" and not cpu_has_amx():
        # A real choice, but rarely a faster one here: measured on a 2-core AVX-512 CPU without
        # AMX, a 1024^2 bf16 matmul ran at 164 GFLOP/s against 282 for fp32.
        logger.info(f"Note: {key}={name} computes in bfloat16, but this CPU has no AMX "
                    f"(cpu capability {torch.backends.cpu.get_cpu_capability()}, no amx_bf16 flag): it will "
                    f"likely be slower than fp32 here (e.g. 1024^2 matmul 164 vs 282 GFLOP/s on such a CPU)")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}=bf16 needs a GPU with bfloat16 support; use fp16 or amp.")
    return Precision(name, device)
