"""SIGTERM (how SLURM and other schedulers preempt) and SIGINT (Ctrl-C) as a clean stop.

While a run is active (``handling()``), either signal raises ``Interrupted`` in the main
thread -- at once, or, when it arrives while a DataLoader forks its workers (an exception
raised in the fork hooks would only be printed), before the next batch (``check()``) -- which train.py turns into one line naming the last saved epoch and how to resume,
exit status 128 + signal (143 / 130), no traceback. Checkpoint writes run ``deferred()``: a
signal that arrives while the epoch files and the manifest are written is acted on once they
are complete, so the checkpoint on disk is always a whole epoch (and, as every file is written
to a temporary name and renamed, a kill that cannot be caught leaves the previous one).
"""
import contextlib
import os
import signal

SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
_state = {"deferred": 0, "pending": None, "received": None, "pid": None}


class Interrupted(BaseException):
    """The run was asked to stop by a signal (BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum):
        super().__init__(SIGNALS.get(signum, str(signum)))
        self.signum = signum

    @property
    def name(self):
        return SIGNALS.get(self.signum, f"signal {self.signum}")

    @property
    def exit_code(self):
        return 128 + int(self.signum)


def _handler(signum, frame):
    if os.getpid() != _state["pid"]:
        # a forked DataLoader worker inherited the handler: behave as without it (SIGINT is the
        # KeyboardInterrupt torch's worker loop ends on quietly, SIGTERM ends the process)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state["received"] = signum
    if _state["deferred"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def _fork_before():
    # a DataLoader starting its workers: an exception raised inside the fork hooks (logging's
    # among them) would only be printed, so the signal waits for check() at the next batch
    _state["deferred"] += 1


def _fork_after_parent():
    _state["deferred"] -= 1


def _fork_after_child():
    _state["deferred"] = 0


os.register_at_fork(before=_fork_before, after_in_parent=_fork_after_parent, after_in_child=_fork_after_child)


def check():
    """Raise Interrupted if a signal came in whose exception did not reach the loop (Python
    drops exceptions raised inside fork hooks and finalizers): called before every batch."""
    if _state["received"] is not None and not _state["deferred"]:
        raise Interrupted(_state["received"])


def received():
    """The signal received during the run, if any (an error that follows one, e.g. a DataLoader
    worker killed by the same SIGTERM, is part of the interruption)."""
    return _state["received"]


@contextlib.contextmanager
def handling():
    """Install the handlers for the life of a run (the previous ones are restored after)."""
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.update(deferred=0, pending=None, received=None, pid=os.getpid())
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """A section a signal must not cut (writing a checkpoint): the signal is acted on after it."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
        if not _state["deferred"] and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Interrupted(signum)
