"""The SLURM backend, through submitit: one array task per chain (a run and the runs that
need it, e.g. train on base then test on new), a concurrency cap on the array, requeue on
preemption or timeout. A requeued task runs its chain again: finished runs are skipped and
the interrupted one resumes from its checkpoint (train.py into the same folder resumes)."""
import json
import os

import submitit

from .runner import execute
from .spec import chains
from .state import BLOCKED, DONE, FAILED, write_record

# sweep `slurm:` key -> AutoExecutor parameter
PARAMS = {"partition": "slurm_partition", "timeout_min": "timeout_min", "gpus_per_node": "gpus_per_node",
          "cpus_per_task": "cpus_per_task", "mem_gb": "mem_gb", "account": "slurm_account", "qos": "slurm_qos",
          "constraint": "slurm_constraint", "array_parallelism": "slurm_array_parallelism",
          "setup": "slurm_setup", "additional_parameters": "slurm_additional_parameters"}
DEFAULTS = {"timeout_min": 240, "gpus_per_node": 1, "cpus_per_task": 8, "array_parallelism": 64}


class Chain(submitit.helpers.Checkpointable):
    """One array task: the runs of a chain in order (dependents only after their dependency)."""

    def __init__(self, sweep, runs, python=None):
        self.sweep, self.runs, self.python = sweep, runs, python
        self._proc = None

    def __getstate__(self):   # the live process never travels in the pickle
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, d):
        self.__dict__.update(d, _proc=None)

    def __call__(self):
        state = {}
        for r in self.runs:
            if any(state.get(d) not in (DONE, None) for d in r.deps):
                state[r.key] = BLOCKED
                write_record(self.sweep, r, state=BLOCKED, deps=r.deps)
                continue
            state[r.key] = execute(self.sweep, r, self.python, on_start=self._started)
        return state

    def _started(self, proc):
        self._proc = proc

    def checkpoint(self, *args, **kwargs):
        # Preemption / timeout: stop the run now (its last epoch checkpoint is on disk) so the
        # requeued task can take the folder's lock, then resubmit the same chain.
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=60)
            except Exception:  # noqa: BLE001 - the scheduler kills it anyway
                pass
        return super().checkpoint(*args, **kwargs)


def executor(sw, cluster="slurm"):
    params = dict(DEFAULTS, **{k: v for k, v in sw.slurm.items() if v is not None})
    ex = submitit.AutoExecutor(folder=os.path.join(sw.folder, "submitit", "%j"), cluster=cluster,
                               slurm_max_num_timeout=int(params.pop("max_num_timeout", 3)))
    ex.update_parameters(name=f"e2mim-{sw.name}", **{PARAMS[k]: v for k, v in params.items() if k in PARAMS})
    return ex


def submit(sw, runs, cluster="slurm", python=None):
    """Submit the chains that hold a run not done yet, as one job array. Returns the jobs."""
    from .state import is_done
    by_key = {r.key: r for r in runs}
    todo = [[by_key[k] for k in keys] for _, keys in chains(runs) if not all(is_done(by_key[k]) for k in keys)]
    if not todo:
        return []
    ex = executor(sw, cluster)
    jobs = []
    with ex.batch():
        for c in todo:
            jobs.append(ex.submit(Chain(sw, c, python)))
    os.makedirs(sw.folder, exist_ok=True)
    with open(os.path.join(sw.folder, "slurm_jobs.json"), "a") as f:
        for job, c in zip(jobs, todo):
            f.write(json.dumps({"job_id": str(job.job_id), "runs": [r.key for r in c]}) + "\n")
    return jobs


def wait(jobs):
    """Results of the jobs ({key: state}); a job that crashed counts its runs as failed."""
    out = {}
    for job in jobs:
        try:
            out.update(job.result())
        except Exception as e:  # noqa: BLE001 - reported, the others are still collected
            out[f"job {job.job_id}"] = f"{FAILED}: {e}"
    return out
