"""One item of a dataset, as Dassl's ``Datum``."""


class Datum:
    """One image: path, label, domain, class name (Dassl's Datum, without its per-item file check)."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, int(label), int(domain), classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    domain = property(lambda self: self._domain)
    classname = property(lambda self: self._classname)

    def __repr__(self):
        return f"Datum({self._impath!r}, {self._label}, {self._classname!r})"

    def __eq__(self, other):
        return isinstance(other, Datum) and (self.impath, self.label, self.domain, self.classname) == (
            other.impath, other.label, other.domain, other.classname)
