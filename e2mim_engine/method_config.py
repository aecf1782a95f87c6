"""A method's config node as a typed, frozen view, declared once.

A method declares its keys as a frozen dataclass: one field per key (the key in lower case,
``MI_WEIGHT`` -> ``mi_weight``), each an ``option`` with its default, its valid choices
(strings, matched case-insensitively and stored lower-case) and a check. From that one
declaration ``config_node`` makes the yacs node the method's ``extend_cfg`` adds, and
``parse_view`` reads the merged node once into the dataclass, raising a ConfigError that
names the key. A view may add cross-key checks in a ``check(prefix)`` method.
"""
import dataclasses

from yacs.config import CfgNode as CN

from .errors import ConfigError


def option(default, choices=None, check=None, key=None):
    """A field of a method's view: ``default``, the valid ``choices`` (or None), a ``check``
    (one of the checks below, or (condition, what the key must be)) and the config ``key``
    when it is not the field's name in upper case (e.g. LAMBDA, a Python keyword)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices) if choices else None,
                                                        "check": check, "key": key})


def _key(f):
    return f.metadata.get("key") or f.name.upper()


# Checks: (condition, what the error says the key must be).
AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
POSITIVE = (lambda v: 0 < v < float("inf"), "must be a positive number")
POSITIVE_INT = (lambda v: int(v) == v and v >= 1, "must be a positive integer")
INT_AT_LEAST_0 = (lambda v: int(v) == v and v >= 0, "must be an integer >= 0 (0 = off)")
IN_0_1 = (lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]")


def config_node(view_cls, node=None):
    """The yacs node of ``view_cls``'s keys and defaults (added to ``node`` when given, e.g.
    a node holding CoOp's context keys)."""
    node = CN() if node is None else node
    for f in dataclasses.fields(view_cls):
        node[_key(f)] = f.default
    return node


def parse_view(view_cls, node, prefix):
    """The frozen ``view_cls`` of a merged config ``node`` (``prefix``: its name, e.g.
    "TRAINER.E2MIM", for the errors)."""
    values = {}
    for f in dataclasses.fields(view_cls):
        key = _key(f)
        raw = node[key] if key in node else f.default
        value, choices, check = raw, f.metadata.get("choices"), f.metadata.get("check")
        if choices:
            value = str(raw).strip().lower()
            if value not in choices:
                raise ConfigError(f"Unknown {prefix}.{key}='{raw}'; valid: {', '.join(choices)}.")
        if check is not None:
            ok, must = check
            try:
                good = bool(ok(value))
            except (TypeError, ValueError):
                good = False
            if not good:
                raise ConfigError(f"{prefix}.{key} {must}; got {raw!r}.")
        values[f.name] = value
    view = view_cls(**values)
    if hasattr(view, "check"):
        view.check(prefix)
    return view


def view_items(view, prefix):
    """{"<prefix>.<KEY>": value} of every key of a view (what results.json records)."""
    return {f"{prefix}.{_key(f)}": getattr(view, f.name) for f in dataclasses.fields(view)}
