"""Reading results.json files and the base-to-new arithmetic (shared by the demo and tools)."""
import json
import os


def harmonic_mean(base, new):
    """HM = 2*b*n/(b+n), the base-to-new summary; 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def read_result(output_dir):
    path = os.path.join(output_dir, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
