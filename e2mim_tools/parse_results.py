"""Result tables for the benchmark protocols, several methods side by side.

Reads every run folder under the given roots (our results.json, or Dassl's log.txt for
runs made with the published repositories; layouts in e2mim_tools.results.discovery), and
prints base-to-new (per dataset base/new/HM, mean ± std over seeds, the average row as
HM of the averaged base and new, the published rows of e2mim_tools.published marked "reported"),
cross-dataset, domain-generalization and few-shot tables. Runs that are missing or
unfinished are listed; cells with fewer seeds than expected are flagged and never
averaged silently.

  e2mim-results output
  e2mim-results output ../CoOp/output --tables base2new --format latex
  e2mim-results output --save results/tables     # .md, .csv and .tex
"""
import argparse
import os
import sys

from e2mim_tools.protocols import DEFAULT_SEEDS, XD_SOURCE
from e2mim_tools.results import EXTENSIONS, RENDERERS, build_report


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="+", help="output folders to search for runs")
    p.add_argument("--tables", nargs="+", default=["base2new", "xd", "dg", "fewshot"],
                   choices=["base2new", "xd", "dg", "fewshot"])
    p.add_argument("--seeds", nargs="+", type=int,
                   help="seeds every cell should have (default: every seed found under the roots; the protocols "
                        f"use {' '.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--datasets", nargs="+", help="base-to-new / few-shot datasets (yaml names; default: all found)")
    p.add_argument("--xd-datasets", nargs="+", help="cross-dataset targets (default: all found)")
    p.add_argument("--dg-datasets", nargs="+", help="domain-generalization targets (default: all found)")
    p.add_argument("--xd-source", default=XD_SOURCE, help="the dataset cross-dataset models were trained on")
    p.add_argument("--shots", nargs="+", type=int, help="few-shot columns (default: all found)")
    p.add_argument("--methods", nargs="+", help="only these trainers (Trainer or Trainer/cfg)")
    p.add_argument("--format", default="md", choices=sorted(RENDERERS), help="what to print")
    p.add_argument("--save", default="", help="also write PREFIX.md, PREFIX.csv and PREFIX.tex")
    p.add_argument("--partial", action="store_true",
                   help="average over the cells that are there (flagged with *) instead of leaving averages out")
    p.add_argument("--sample-std", action="store_true", help="std with ddof=1 (default ddof=0, as CoOp's parser)")
    p.add_argument("--no-reported", action="store_true", help="leave out the published rows")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any run is missing, unfinished or flagged")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    for r in a.roots:
        if not os.path.isdir(r):
            print(f"error: {r} is not a folder (pass the output folder the protocol scripts wrote to)", file=sys.stderr)
            return 2
    report = build_report(a.roots, seeds=a.seeds or "found", datasets=a.datasets, xd_datasets=a.xd_datasets,
                          dg_datasets=a.dg_datasets, shots=a.shots, methods=a.methods, tables=a.tables,
                          ddof=1 if a.sample_std else 0, partial=a.partial, reported=not a.no_reported,
                          xd_source=a.xd_source)
    for problem in report.flagged:
        print(f"warning: {problem}: left out of the tables", file=sys.stderr)
    if not report.tables:
        print(f"No protocol runs found under {', '.join(a.roots)} (expected folders like "
              f"base2new/train_base/<dataset>/shots_16/<Trainer>/<cfg>/seed1).", file=sys.stderr)
        return 1
    sys.stdout.write(RENDERERS[a.format](report))
    if a.save:
        os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
        for fmt, render in RENDERERS.items():
            with open(a.save + EXTENSIONS[fmt], "w") as f:
                f.write(render(report))
    return 1 if a.strict and (report.missing or report.unfinished or report.flagged) else 0


if __name__ == "__main__":
    sys.exit(main())
