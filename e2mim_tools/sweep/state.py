"""What the sweep knows about its runs: the run folders themselves (results.json says a run
is done) and one small record per run in the sweep folder (running / failed / duration), so
that `status` works from any shell, for both backends, after a crash of the sweep."""
import json
import os
import socket
import time
from collections import Counter, OrderedDict

from .spec import log_name

DONE, RUNNING, FAILED, BLOCKED, PENDING = "done", "running", "failed", "blocked", "pending"
STATES = (DONE, RUNNING, FAILED, BLOCKED, PENDING)
HOST = socket.gethostname()


def state_dir(sw):
    return os.path.join(sw.folder, "state")


def log_path(sw, run):
    return os.path.join(sw.folder, "logs", log_name(run.key))


def _record_path(sw, run):
    return os.path.join(state_dir(sw), log_name(run.key)[:-4] + ".json")


def read_record(sw, run):
    try:
        with open(_record_path(sw, run)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_record(sw, run, **rec):
    path = _record_path(sw, run)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rec = OrderedDict(key=run.key, host=HOST, time=time.time(), **rec)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(tmp, path)   # a reader never sees half a record


def is_done(run):
    """results.json is there and says it is this run (the fields the sweep sets)."""
    try:
        with open(os.path.join(run.directory, "results.json")) as f:
            ident = json.load(f).get("identity") or {}
    except (OSError, ValueError):
        return False
    return all(ident.get(k) == v for k, v in run.expect.items())


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def run_state(sw, run, states):
    """The state of one run given the states of the runs before it (its dependencies)."""
    if is_done(run):
        return DONE, read_record(sw, run)
    rec = read_record(sw, run)
    st = rec.get("state")
    if st == RUNNING and (rec.get("host") != HOST or _alive(rec.get("pid"))):
        return RUNNING, rec
    if st == FAILED:
        return FAILED, rec
    if any(states.get(d) in (FAILED, BLOCKED) for d in run.deps):
        return BLOCKED, rec
    return PENDING, rec


def collect(sw, runs):
    """{key: (state, record)} for every run, dependencies first."""
    out, states = OrderedDict(), {}
    for r in runs:
        st, rec = run_state(sw, r, states)
        states[r.key] = st
        out[r.key] = (st, rec)
    return out


def _bar(done, total, width=30):
    n = int(round(width * done / total)) if total else width
    return "[" + "#" * n + "-" * (width - n) + "]"


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def eta(runs, info, concurrency):
    """Seconds left: the mean duration of this sweep's finished runs of the same kind (train /
    eval) for every run not done, failed or blocked, over the concurrency. None without data."""
    durations = {}
    for r in runs:
        st, rec = info[r.key]
        if st == DONE and rec.get("duration"):
            durations.setdefault(r.kind, []).append(rec["duration"])
    if not durations:
        return None
    overall = [d for v in durations.values() for d in v]
    mean = {k: sum(v) / len(v) for k, v in durations.items()}
    left = 0.0
    for r in runs:
        st, rec = info[r.key]
        if st in (PENDING, RUNNING):
            m = mean.get(r.kind, sum(overall) / len(overall))
            left += max(0.0, m - (time.time() - rec.get("start", time.time()))) if st == RUNNING else m
    return left / max(1, concurrency)


def render_status(sw, runs, info, concurrency=1):
    lines = [f"Sweep {sw.name}: {len(runs)} runs under {sw.output}"]
    by_proto = OrderedDict()
    for r in runs:
        by_proto.setdefault(r.protocol, Counter())[info[r.key][0]] += 1
    for proto, c in by_proto.items():
        total = sum(c.values())
        lines.append(f"  {proto:9} {_bar(c[DONE], total)} {c[DONE]:4d}/{total:<4d} "
                     + "  ".join(f"{s} {c[s]}" for s in STATES[1:]))
    c = Counter(st for st, _ in info.values())
    e = eta(runs, info, concurrency)
    lines.append(f"  {'all':9} {_bar(c[DONE], len(runs))} {c[DONE]:4d}/{len(runs):<4d} "
                 + "  ".join(f"{s} {c[s]}" for s in STATES[1:])
                 + (f"  ETA {_hms(e)} (from finished runs, {concurrency} at a time)" if e is not None and
                    c[PENDING] + c[RUNNING] else ""))
    for r in runs:
        st, rec = info[r.key]
        if st == FAILED:
            lines.append(f"  FAILED  {r.key} (exit {rec.get('returncode')}): {rec.get('message', '')}\n"
                         f"          log: {rec.get('log')}")
    for r in runs:
        if info[r.key][0] == BLOCKED:
            lines.append(f"  SKIPPED {r.key}: needs {', '.join(r.deps)}, which did not finish")
    for r in runs:
        st, rec = info[r.key]
        if st == RUNNING:
            lines.append(f"  running {r.key} on {rec.get('host')} {rec.get('device') or ''}".rstrip())
    return "\n".join(lines) + "\n"
