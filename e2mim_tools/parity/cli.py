"""The ``e2mim-parity`` command (the package docstring says what it does)."""
import argparse
import dataclasses
import json
import os
import sys

from e2mim_tools.parity import METHODS
from e2mim_tools.parity.common import per_batch, run_case, table


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Train a method beside its authors' code on identical tiny inputs and compare "
                    "per-batch losses, new-class logits and learned tensors (docs/PARITY.md).")
    p.add_argument("method", choices=sorted(METHODS), help="the method (its module's CASES are run)")
    p.add_argument("--checkout", required=True, help="plain checkout of the published repository")
    p.add_argument("--ref-python", default=sys.executable,
                   help="interpreter of the published code (torch, Dassl's requirements; default: this one)")
    p.add_argument("--dassl", default="", help="a Dassl.pytorch checkout put on the published side's "
                   "PYTHONPATH (for repositories that do not bundle one; default: the one installed)")
    p.add_argument("--out", default="/tmp/e2mim-parity", help="work folder (fixture reused, runs replaced)")
    p.add_argument("--case", action="append", default=[], help="run only these cases (repeatable)")
    p.add_argument("--no-diagnosis", action="store_true", help="skip the diagnosis cases")
    p.add_argument("--own-init", action="store_true", help="our runs keep the initial tensors they drew "
                   "instead of loading the published ones (checks our initialisation and its draw order)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="more KEY VALUE pairs for both sides of every case (after the case's own)")
    a = p.parse_args(argv)
    if len(a.opts) % 2:
        p.error(f"--opts takes KEY VALUE pairs; got {len(a.opts)} words")
    module = METHODS[a.method]
    cases = [dataclasses.replace(c, opts=c.opts + tuple(a.opts)) for c in module.CASES
             if (not a.case or c.name in a.case) and not (a.no_diagnosis and c.of)]
    if not cases:
        p.error(f"no case of {a.method} selected; its cases: {', '.join(c.name for c in module.CASES)}")
    checkout, out = os.path.abspath(a.checkout), os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    records, failed = [], False
    for case in cases:
        print(f"[{case.name}] running ({module.CHECKOUT})", flush=True)
        try:
            rec = run_case(case, checkout, out, a.ref_python, os.path.abspath(a.dassl) if a.dassl else "", a.own_init)
            rec["init"] = "own" if a.own_init else "published"
            rec["extra_opts"] = a.opts
        except RuntimeError as e:
            rec, failed = {"case": case.name, "error": str(e)}, True
            print(str(e), file=sys.stderr)
        else:
            base = os.path.join(out, case.name)
            print("\n".join(per_batch(case, base, os.path.join(out, case.of or case.name))))
        if case.note:
            rec["note"] = case.note
        with open(os.path.join(out, f"{case.name}.json"), "w") as f:
            json.dump(rec, f, indent=1)
        print(json.dumps(rec), flush=True)
        records.append(rec)
    print(table(records))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
