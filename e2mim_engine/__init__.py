"""E2MIM's engine: Dassl's interfaces (config, registries, trainer base, data, optim,
evaluation) rebuilt for current PyTorch, CPU and GPU.

Named ``e2mim_engine`` so that it can never shadow ``dassl`` or Hugging Face ``datasets``.
"""
from .errors import UserError, ConfigError, DataError, WeightsError  # noqa: F401

__version__ = "0.1.0"
