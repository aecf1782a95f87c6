"""Sweeps: a whole comparison as data (methods x protocols x datasets x seeds), expanded
into the runs of the protocols' output tree and run on local GPU/CPU slots or on SLURM
through submitit. The command is e2mim-sweep (``python -m e2mim_tools.sweep``)."""
from .spec import PROTOCOLS, MethodSpec, Run, Sweep, SweepError, chains, expand, load

__all__ = ["PROTOCOLS", "MethodSpec", "Run", "Sweep", "SweepError", "chains", "expand", "load", "main"]


def main(argv=None):
    from .cli import main as _main
    return _main(argv)
