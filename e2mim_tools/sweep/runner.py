"""Running the runs: one train.py process per run, and the local backend (a queue over N
slots on the visible GPUs or the CPU)."""
import os
import signal
import subprocess
import sys
import time

from .state import BLOCKED, DONE, FAILED, HOST, RUNNING, is_done, log_path, write_record

BUSY = "being written by another run"


def _die_with_parent():
    # Linux: the child gets SIGTERM when the sweep dies, even by SIGKILL, so no orphan keeps
    # a run folder locked (the run resumes from its checkpoint next time).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: children may outlive a killed sweep
        pass


def _tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


def child_env(device=None, threads=None):
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(device)
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Forked:
    """A run in a child forked from this process after the training stack was imported once
    (``preload``): no interpreter start-up and no imports per run, the same isolation (own
    process, own lock, a crash stays in it). Quacks like Popen for the queue."""

    def __init__(self, args, log_fd, env, threads=None):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for s in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(s, signal.SIG_DFL)
                _die_with_parent()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                sys.stdout = open(1, "w", buffering=1, closefd=False)   # not a replaced parent stream
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                # CUDA is not initialised in the parent, so the slot's device applies here.
                os.environ.clear()
                os.environ.update(env)
                import torch
                torch.set_num_threads(int(threads or env.get("OMP_NUM_THREADS") or torch.get_num_threads()))
                from e2mim_tools.train import main
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported in the run's log
                import traceback
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code if isinstance(code, int) else 1)
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        t0 = time.time()
        while self.poll() is None:
            if timeout is not None and time.time() - t0 > timeout:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode

    def _signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self._signal(signal.SIGTERM)

    def kill(self):
        self._signal(signal.SIGKILL)


def preload():
    """Import the training stack in this process (for Forked runs); False where forking would
    not give each run its own device (CUDA already initialised here) or there is no fork."""
    if not hasattr(os, "fork"):
        return False
    import e2mim_tools.train  # noqa: F401  (the slow imports, once)
    import torch
    try:  # imported lazily by the evaluator and the trainer's writer
        import sklearn.metrics  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        pass
    return not torch.cuda.is_initialized()


def start(sw, run, python=None, device=None, threads=None, forked=False):
    """Start one run's process (its output appended to the run's log in the sweep folder)."""
    log = log_path(sw, run)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    f = open(log, "a")
    f.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} {HOST} device={device}"
            f"{' (forked from the sweep)' if forked else ''}\n==> {' '.join(run.command(python))}\n")
    f.flush()
    if forked:
        proc = Forked(run.args, f.fileno(), child_env(device, threads), threads)
    else:
        proc = subprocess.Popen(run.command(python), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(device, threads),
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    f.close()
    write_record(sw, run, state=RUNNING, pid=proc.pid, device=device, start=time.time(), log=log)
    return proc


def finish(sw, run, returncode, started):
    """Record how a run ended; returns done | failed | busy."""
    log = log_path(sw, run)
    duration = time.time() - started
    if returncode == 0 and is_done(run):
        write_record(sw, run, state=DONE, duration=duration, start=started, log=log)
        return DONE
    msg = _tail(log)
    if returncode == 2 and BUSY in msg:
        # Another process writes this folder: not a failure of the run; its record stays theirs.
        return "busy"
    if returncode == 0:
        msg = f"exited 0 without a matching results.json in {run.directory}"
    write_record(sw, run, state=FAILED, returncode=returncode, message=msg, duration=duration, start=started,
                 log=log)
    return FAILED


def execute(sw, run, python=None, device=None, threads=None, on_start=None):
    """Run one run to its end in the foreground (the SLURM task's way)."""
    if is_done(run):
        return DONE
    t0 = time.time()
    proc = start(sw, run, python, device, threads)
    if on_start:
        on_start(proc)
    return finish(sw, run, proc.wait(), t0)


def visible_gpus():
    """GPU ids the runs may use: CUDA_VISIBLE_DEVICES if set, else nvidia-smi's list."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.replace(" ", "").split(",") if g and g != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def slot_devices(slots=None, gpus=None, per_gpu=1):
    """The device of every slot: GPUs round-robin (``per_gpu`` runs each by default), or None
    (CPU) for every slot when there is no GPU."""
    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        return [None] * max(1, int(slots or 1))
    n = int(slots or len(gpus) * max(1, int(per_gpu)))
    return [gpus[i % len(gpus)] for i in range(max(1, n))]


class Interrupted(Exception):
    pass


def _raise(signum, frame):
    raise Interrupted(signum)


def run_local(sw, runs, devices, python=None, log=print, poll=0.2, forked=False):
    """Run every run not done, len(devices) at a time; a run starts as soon as a slot is free
    and its dependencies are done. A failure is recorded and only stops its dependents.
    ``forked``: runs are forked from this process (see Forked; call preload() first) instead
    of started as new interpreters. Returns {key: done | failed | blocked | busy}."""
    state = {r.key: DONE for r in runs if is_done(r)}
    queue = [r for r in runs if r.key not in state]
    free = list(range(len(devices)))
    active = {}   # slot -> (run, proc, start)
    cpu = all(d is None for d in devices)
    threads = max(1, (os.cpu_count() or 1) // len(devices)) if cpu else None
    skipped = len(state)
    if skipped:
        log(f"{skipped} run(s) already done, skipped; {len(queue)} to run on {len(devices)} slot(s)")
    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while queue or active:
            for r in list(queue):
                if any(state.get(d) in (FAILED, BLOCKED, "busy") for d in r.deps):
                    state[r.key] = BLOCKED
                    queue.remove(r)
                    write_record(sw, r, state=BLOCKED, deps=r.deps)
                    log(f"SKIPPED {r.key}: a run it needs did not finish")
            while free:
                ready = next((r for r in queue if all(state.get(d) == DONE for d in r.deps)), None)
                if ready is None:
                    break
                slot = free.pop(0)
                queue.remove(ready)
                active[slot] = (ready, start(sw, ready, python, devices[slot], threads, forked),
                                time.time())
                log(f"start  {ready.key}" + (f" (GPU {devices[slot]})" if devices[slot] is not None else ""))
            if not active:
                if queue:   # nothing ready and nothing running: dependencies outside the sweep
                    for r in queue:
                        state[r.key] = BLOCKED
                        write_record(sw, r, state=BLOCKED, deps=r.deps)
                    queue = []
                break
            time.sleep(poll)
            for slot, (r, proc, t0) in list(active.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del active[slot]
                free.append(slot)
                free.sort()
                state[r.key] = finish(sw, r, rc, t0)
                tag = {DONE: "done  ", FAILED: "FAILED", "busy": "busy  "}[state[r.key]]
                log(f"{tag} {r.key} ({time.time() - t0:.1f} s)"
                    + (f", log: {log_path(sw, r)}" if state[r.key] == FAILED else "")
                    + (": another process is writing it" if state[r.key] == "busy" else ""))
    except Interrupted:
        for r, proc, t0 in active.values():
            proc.terminate()
        for r, proc, t0 in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            # Left as interrupted (no record of a live process): the next sweep resumes it.
            write_record(sw, r, state="interrupted", start=t0, log=log_path(sw, r))
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return state
