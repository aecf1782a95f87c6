"""Results of the benchmark protocols: reading runs, aggregating seeds, building tables.

* discovery: run folders under output roots (the protocols' output tree and CoOp's
  few-shot layout) and their results (results.json, else Dassl's log)
* dassl_log: the test result of a Dassl-style log.txt
* aggregate: mean ± std over seeds, averages over datasets, HM; the protocol tables
* render: Markdown, LaTeX and CSV

Datasets, seeds and layouts come from e2mim_tools.protocols, the published reference rows
from e2mim_tools.published.
"""
from .aggregate import Cell, Report, Table, build_report, harmonic_mean
from .dassl_log import parse_dassl_log
from .discovery import Run, classify, find_runs, read_result, read_run_result
from .render import EXTENSIONS, RENDERERS, render_csv, render_latex, render_markdown

__all__ = ["Cell", "Report", "Run", "Table", "EXTENSIONS", "RENDERERS", "build_report", "classify", "find_runs",
           "harmonic_mean", "parse_dassl_log", "read_result", "read_run_result", "render_csv", "render_latex",
           "render_markdown"]
