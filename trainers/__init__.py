"""Prompt-learning methods. Every module in this package is imported here, so each
registers its trainer and config node itself: adding a method never means editing train.py."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
