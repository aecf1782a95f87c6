"""Figures (PNG, matplotlib's Agg backend, no display needed).

* ``tsne``: image features of a test set together with the class text features of both
  views, the hand-crafted prompts and the learned (soft) prompts, in one t-SNE embedding
  (the paper's Figure 2).
* ``base2new_bars``: per-dataset base/new accuracy bars (HM as a dot), methods side by side.
* ``fewshot_curves``: accuracy against shots per dataset, zero-shot CLIP as a line.

The last two draw the tables of e2mim_tools.results, so they show exactly the numbers the
results tool prints (mean over seeds, std as error bars; incomplete cells hollow).
"""
import math

import numpy as np

from .results import build_report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n):
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "hsv")
    return [cmap(i / max(n, 1)) if n > 20 else cmap(i) for i in range(n)]


# ---- t-SNE of image features and both views' text features -------------------------------------
def tsne(image_feats, labels, views, classnames, out, perplexity=30.0, seed=0, title=""):
    """One t-SNE of images and class text features; images as dots, hand-crafted class
    features as stars, learned ones as triangles, in the class's colour."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    blocks = [image_feats] + list(views.values())
    X = np.concatenate(blocks).astype(np.float64)
    perplexity = float(min(perplexity, max(2.0, (len(X) - 1) / 3.0)))
    Y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)
    C = len(classnames)
    colors = _colors(C)
    fig, ax = plt.subplots(figsize=(8, 7))
    n = len(image_feats)
    ax.scatter(Y[:n, 0], Y[:n, 1], c=[colors[y] for y in labels], s=10, alpha=0.5, linewidths=0)
    markers = {"hand-crafted": ("*", 260), "learned": ("^", 110)}
    start = n
    for name, f in views.items():
        m, size = markers.get(name, ("s", 80))
        pts = Y[start:start + len(f)]
        start += len(f)
        ax.scatter(pts[:, 0], pts[:, 1], c=colors[:len(f)], marker=m, s=size, edgecolors="black",
                   linewidths=0.8, label=f"{name} prompts", zorder=3)
    if C <= 20:
        for c, name in enumerate(classnames):
            ax.scatter([], [], color=colors[c], s=20, label=name.replace("_", " "))
    ax.scatter([], [], color="gray", s=10, alpha=0.5, label="images")
    ax.legend(fontsize=7, loc="best", ncol=2 if C > 10 else 1, framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of image features and class text features")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ---- result figures --------------------------------------------------------------------------
def _table(report, prefix):
    return next((t for t in report.tables if t.title.startswith(prefix)), None)


def _grid(n, plt, w=3.6, h=3.0):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def base2new_bars(roots, out, reported=True, **kw):
    """A panel per dataset (Average first): base and new bars per method, HM as a dot."""
    plt = _pyplot()
    report = build_report(roots, tables=["base2new"], reported=reported, **kw)
    t = _table(report, "Base-to-new")
    if t is None:
        raise ValueError(f"no base-to-new runs under {roots}")
    datasets = list(dict.fromkeys(r[0] for r in t.rows))
    fig, axes = _grid(len(datasets), plt)
    for ax, d in zip(axes, datasets):
        rows = [r for r in t.rows if r[0] == d]
        x = np.arange(len(rows))
        for off, col, color, label in ((-0.2, 2, "#4C72B0", "base"), (0.2, 3, "#DD8452", "new")):
            vals = [r[col].mean if not r[col].empty else 0.0 for r in rows]
            err = [r[col].std or 0.0 for r in rows]
            bars = ax.bar(x + off, vals, 0.4, yerr=err, color=color, label=label, capsize=2)
            for b, r in zip(bars, rows):
                if r[col].reported:
                    b.set_hatch("//")
                if r[col].flagged:
                    b.set_fill(False)
                    b.set_edgecolor(color)
        hm = [r[4].mean if not r[4].empty else np.nan for r in rows]
        ax.plot(x, hm, "k.", markersize=8, label="HM")
        ax.set_xticks(x)
        ax.set_xticklabels([r[1] for r in rows], rotation=45, ha="right", fontsize=7)
        ax.set_title(d, fontsize=9)
        ax.set_ylim(0, 100)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Base-to-new accuracy (%), mean ± std over seeds; hatched: reported; hollow: incomplete",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def fewshot_curves(roots, out, **kw):
    """A panel per dataset (Average first): accuracy against shots (log2 axis) per method;
    zero-shot runs (0 shots) as a dashed line."""
    plt = _pyplot()
    report = build_report(roots, tables=["fewshot"], reported=False, **kw)
    t = _table(report, "Few-shot")
    if t is None:
        raise ValueError(f"no few-shot runs under {roots}")
    shots = [int(c.split()[0]) for c in t.columns[2:]]
    datasets = list(dict.fromkeys(r[0] for r in t.rows))
    methods = list(dict.fromkeys(r[1] for r in t.rows))
    colors = dict(zip(methods, _colors(len(methods))))
    positive = [k for k in shots if k > 0]
    fig, axes = _grid(len(datasets), plt)
    for ax, d in zip(axes, datasets):
        for r in (r for r in t.rows if r[0] == d):
            pts = [(k, c) for k, c in zip(shots, r[2:]) if c is not None and not c.empty]
            if not pts:
                continue
            if all(k == 0 for k, _ in pts):
                ax.axhline(pts[0][1].mean, color=colors[r[1]], linestyle="--", label=r[1])
                continue
            pts = [(k, c) for k, c in pts if k > 0]
            ks = [k for k, _ in pts]
            m = np.array([c.mean for _, c in pts])
            s = np.array([c.std or 0.0 for _, c in pts])
            ax.plot(ks, m, "-", color=colors[r[1]], label=r[1])
            ax.fill_between(ks, m - s, m + s, color=colors[r[1]], alpha=0.15)
            for k, c in pts:
                ax.plot([k], [c.mean], "o", color=colors[r[1]], markerfacecolor="white" if c.flagged else colors[r[1]])
        if positive:
            ax.set_xscale("log", base=2)
            ax.set_xticks(positive)
            ax.set_xticklabels([str(k) for k in positive])
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("shots per class", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Few-shot accuracy, mean ± std over seeds (hollow: incomplete)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
