"""The benchmark's one way to time things: rounds of named tasks, and the line protocol of a
worker process that times one task per request.

``time_rounds`` warms every task up, then runs rounds A B C ... A B C ... (a machine whose
load changes slows all tasks alike) and returns each task's times; ``median`` is what the
tables show (robust to other jobs). ``serve`` answers a parent process: it prints READY,
then for each line ``<task>`` on stdin prints ``T <seconds>``; ``done`` prints the RESULT
line. Both our worker and the published CoOp's (bench_published) use it.
"""
import json
import resource
import sys
import time


def median(xs):
    return sorted(xs)[len(xs) // 2]


def _sync(device):
    if device is not None and device.type == "cuda":
        import torch
        torch.cuda.synchronize()


def timed(fn, device=None):
    """Seconds one call of ``fn`` takes (CUDA work included: synchronized before and after)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def time_rounds(tasks, rounds, warmup=0, device=None):
    """{name: [seconds per round]} of ``tasks`` ({name: callable}): ``warmup`` untimed calls
    of each, then ``rounds`` rounds calling every task once, in order."""
    for fn in tasks.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in tasks}
    for _ in range(rounds):
        for name, fn in tasks.items():
            times[name].append(timed(fn, device))
    return times


def peak_memory_mb(device):
    """The allocator's peak on CUDA, the process's peak resident set size on CPU (MiB)."""
    if device.type == "cuda":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(tasks, device, result, prepare=None, stdin=None, stdout=None):
    """Answer a parent: READY; ``<task>`` -> ``T <seconds>`` (``prepare[task]`` runs untimed
    first, when given); ``done`` -> ``RESULT <json of result + peak_mem_mb>``."""
    stdin, stdout, prepare = stdin or sys.stdin, stdout or sys.stdout, prepare or {}
    if device.type == "cuda":
        import torch
        torch.cuda.reset_peak_memory_stats()
    print("READY", file=stdout, flush=True)
    for line in stdin:
        cmd = line.strip()
        if cmd == "done":
            break
        if cmd in tasks:
            if cmd in prepare:
                prepare[cmd]()
            print(f"T {timed(tasks[cmd], device):.6f}", file=stdout, flush=True)
    print("RESULT " + json.dumps(dict(result, peak_mem_mb=peak_memory_mb(device))), file=stdout, flush=True)
