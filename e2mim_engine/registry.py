"""One registry class for trainers, datasets and evaluators (timm/fvcore style)."""
from .errors import ConfigError, closest


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def register(self, obj=None, name=None):
        """Use as ``@REG.register()`` or ``REG.register(obj)``; ``name`` defaults to the class name."""

        def deco(o):
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = o
            return o

        return deco(obj) if obj is not None else deco

    def get(self, name):
        if name not in self._items:
            hint = closest(name, self._items)
            hint = f" Did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"Unknown {self.kind} '{name}'.{hint} Valid {self.kind} names: "
                f"{', '.join(sorted(self._items))}."
            )
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def __contains__(self, name):
        return name in self._items
