"""The sweep's tables (md, csv, LaTeX) and plots, written into the sweep folder by the
results tool, with missing seeds flagged."""
import os

from e2mim_tools.results import EXTENSIONS, RENDERERS, build_report

TABLES = {"base2new": "base2new", "xd": "xd", "dg": "dg", "fewshot": "fewshot"}


def _selection(sw):
    methods = sorted({f"{m.trainer}/{m.folder(f)}" for m in sw.methods for f in ("b2n", "xd", "fs")})
    shots = sorted(set(sw.fewshot_shots) | ({0} if any(m.zero_shot for m in sw.methods) else set()))
    return dict(seeds=sw.seeds, datasets=sw.datasets, xd_datasets=sw.xd_datasets, dg_datasets=sw.dg_datasets,
                shots=shots, methods=methods, xd_source=sw.xd_source)


def write_report(sw, plots=True, log=print):
    """Write results.{md,csv,tex} (and base2new.png / fewshot.png) into the sweep folder.
    Returns (report, [files])."""
    sel = _selection(sw)
    report = build_report([sw.output], tables=[TABLES[p] for p in sw.protocols], **sel)
    for problem in report.flagged:
        log(f"warning: {problem}: left out of the tables")
    os.makedirs(sw.folder, exist_ok=True)
    files = []
    if report.tables:
        for fmt, render in RENDERERS.items():
            path = os.path.join(sw.folder, "results" + EXTENSIONS[fmt])
            with open(path, "w") as f:
                f.write(render(report))
            files.append(path)
    if plots:
        from e2mim_tools import plots as pl
        kw = {k: v for k, v in sel.items() if k in ("seeds", "datasets", "methods")}
        for proto, fn, name in (("base2new", pl.base2new_bars, "base2new.png"),
                                ("fewshot", pl.fewshot_curves, "fewshot.png")):
            if proto not in sw.protocols:
                continue
            try:
                files.append(fn([sw.output], os.path.join(sw.folder, name), **kw))
            except ValueError as e:   # nothing of that protocol finished yet
                log(f"no {name}: {e}")
    return report, files
