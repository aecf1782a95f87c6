"""Test results of Dassl-style log files (runs made with the published repositories).

The result is the last "=> result" block of the *test* split after "Finish training" (or
"Finished training"), or the last test block of an evaluation-only log. Blocks before that
marker are validation results, and so is a block after it that Dassl announces as
"Evaluate on the *val* set" (TEST.REPORT_VAL, or a run killed during its final test); a
training log without a test block after the marker is an unfinished run (several published
parsers grep a marker the log never contains and read nothing, or the wrong block).
"""
import os
import re

_FINISH = ("Finish training", "Finished training")
_PROGRESS = re.compile(r"^epoch \[\d+/\d+\] batch \[\d+/\d+\]")
_METRIC = re.compile(r"^\* ([a-z_0-9]+): ([-+\d.,eE]+)%?$")
# The split announced before a result block: Dassl's current wording, and the older one of the
# Dassl version CoOp was released with.
_SPLIT = re.compile(r"^(?:Evaluate on the \*(\w+)\* set|Do evaluation on (\w+) set)$")


def parse_dassl_log(text):
    """The test result of a Dassl-style log, or None if the run did not finish.

    Returns {accuracy, error, macro_f1, total, correct} (those present) from the last
    "=> result" block of the test split after the last "Finish training"/"Finished
    training" line, or from the last test block of an evaluation-only log (``eval_only:
    True`` in its arguments, or no training progress lines at all). A block whose split
    line names another split (val) is never the result."""
    lines = [ln.strip() for ln in text.splitlines()]
    finish = max((i for i, ln in enumerate(lines) if ln in _FINISH), default=None)
    if finish is not None:
        start = finish + 1
    elif "eval_only: True" in lines or not any(_PROGRESS.match(ln) for ln in lines):
        start = 0
    else:
        return None  # training that never finished: its result blocks are validation ones
    blocks, split = [], None
    for i in range(start, len(lines)):
        m = _SPLIT.match(lines[i])
        if m:
            split = m.group(1) or m.group(2)
        elif lines[i] == "=> result" and split in (None, "test"):
            blocks.append(i)
    if not blocks:
        return None
    out = {}
    for ln in lines[blocks[-1] + 1:]:
        m = _METRIC.match(ln)
        if not m:
            break
        value = m.group(2).replace(",", "")
        out[m.group(1)] = int(value) if m.group(1) in ("total", "correct") else float(value)
    return out if "accuracy" in out else None


def log_files(directory):
    """log.txt and Dassl's timestamped log.txt-YYYY-MM-DD-HH-MM-SS, oldest first."""
    names = [f for f in os.listdir(directory) if f == "log.txt" or f.startswith("log.txt-")]
    return [os.path.join(directory, f) for f in sorted(names, key=lambda f: (f != "log.txt", f))]
