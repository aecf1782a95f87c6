"""The report as Markdown, LaTeX (booktabs tabular) or long-format CSV."""
import csv
import io

from .aggregate import Cell


def fmt_cell(c, fmt="md"):
    if c is None or isinstance(c, str):
        return _escape(c or "", fmt)
    if c.empty:
        return "n/a*" if c.flagged else "n/a"
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    s = f"{c.mean:.2f}" + (f"{pm}{c.std:.2f}" if c.std is not None and c.n > 1 else "")
    if c.flagged:
        s += f" ({c.n}/{c.expected})*" if c.expected else "*"
    return s


def _escape(s, fmt):
    if fmt != "latex":
        return s
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#")):
        s = s.replace(a, b)
    return s


def _footer(report, fmt):
    lines = []
    if any(isinstance(c, Cell) and c.flagged for t in report.tables for row in t.rows for c in row):
        lines.append("* incomplete: fewer seeds (or datasets) than expected; (n/m) = seeds found / expected. "
                     "Averages over incomplete cells are not given (see the missing runs below).")
    if report.flagged:
        lines.append(f"Flagged runs (result not used): {len(report.flagged)}")
        lines += [f"  {p}" for p in report.flagged]
    if report.unfinished:
        lines.append(f"Unfinished runs (folder exists, no result yet): {len(report.unfinished)}")
        lines += [f"  {p}" for p in report.unfinished]
    if report.missing:
        lines.append(f"Missing runs: {len(report.missing)}")
        lines += [f"  {p}" for p in report.missing]
    return lines


def render_markdown(report):
    out = []
    for t in report.tables:
        out.append(f"### {t.title}\n")
        out.append("| " + " | ".join(t.columns) + " |")
        out.append("|" + "|".join("---" if i < t.n_keys else "---:" for i in range(len(t.columns))) + "|")
        for row in t.rows:
            out.append("| " + " | ".join(fmt_cell(c) for c in row) + " |")
        out.append("")
        out += t.notes
        out.append("")
    out += _footer(report, "md")
    return "\n".join(out).rstrip() + "\n"


def render_latex(report):
    out = []
    for t in report.tables:
        out.append(f"% {t.title}")
        out.append("\\begin{tabular}{" + "l" * t.n_keys + "c" * (len(t.columns) - t.n_keys) + "}")
        out.append("\\toprule")
        out.append(" & ".join(_escape(c, "latex") for c in t.columns) + " \\\\")
        out.append("\\midrule")
        prev = None
        for row in t.rows:
            if t.n_keys > 1 and prev is not None and row[0] != prev:
                out.append("\\midrule")
            prev = row[0]
            out.append(" & ".join(fmt_cell(c, "latex") for c in row) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out += [f"% {n}" for n in t.notes]
        out.append("")
    out += [f"% {ln}" for ln in _footer(report, "latex")]
    return "\n".join(out).rstrip() + "\n"


def render_csv(report):
    """Long format: one row per (table, row keys, column), numbers unformatted."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "dataset", "method", "column", "mean", "std", "n_seeds", "expected", "complete", "reported"])
    for t in report.tables:
        for row in t.rows:
            keys = list(row[:t.n_keys])
            dataset, method = (keys + [""])[:2] if t.n_keys > 1 else ("", keys[0])
            for col, c in zip(t.columns[t.n_keys:], row[t.n_keys:]):
                if c is None:
                    continue
                w.writerow([t.title, dataset, method, col, "" if c.empty else f"{c.mean:.4f}",
                            "" if c.std is None else f"{c.std:.4f}", c.n, c.expected, int(not c.flagged),
                            int(c.reported)])
    for p in report.flagged:
        w.writerow(["flagged", "", "", p, "", "", "", "", "", ""])
    for p in report.unfinished:
        w.writerow(["unfinished", "", "", p, "", "", "", "", "", ""])
    for p in report.missing:
        w.writerow(["missing", "", "", p, "", "", "", "", "", ""])
    return buf.getvalue()


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv}
EXTENSIONS = {"md": ".md", "latex": ".tex", "csv": ".csv"}
