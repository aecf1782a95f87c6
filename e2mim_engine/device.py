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

    fp32: everything float32. fp16/bf16: frozen CLIP weights in that dtype. amp: float32
    weights under autocast (float16 on CUDA, bfloat16 on CPU). Learnable parameters
    always stay float32 (a master copy) and are cast at use, so small SGD steps are not
    rounded away as they are when CoOp trains fp16 context vectors directly.
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
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}=bf16 needs a GPU with bfloat16 support; use fp16 or amp.")
    return Precision(name, device)
