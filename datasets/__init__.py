"""The benchmark dataset zoo. Every module here registers its dataset on import.
Used from the repository root (never installed as a top-level `datasets` package)."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
