"""Write benchmark results: results.csv, report.md (a table per target and budget) and PNG plots."""

from __future__ import annotations

import csv
import math
import pathlib
from collections import defaultdict

import numpy as np

__all__ = ["write_csv", "markdown_report", "plot_samples", "plot_curves", "COLUMNS"]

FLOOR = "exact (floor)"

# Column, header, format, and whether smaller is better (None: not ranked).
COLUMNS = [
    ("n_grad", "grads / particle", "{:.0f}", None),
    ("mean_err", "mean err (sd)", "{:.3f}", True),
    ("cov_err", "cov err (rel)", "{:.3f}", True),
    ("w2", "W2", "{:.3g}", True),
    ("energy", "energy dist", "{:.3g}", True),
    ("mmd", "MMD", "{:.3g}", True),
    ("ksd", "KSD", "{:.3g}", True),
    ("mode_tv", "mode TV", "{:.3f}", True),
    ("emc", "EMC", "{:.3f}", None),
    ("modes_visited", "modes hit", "{:.0f}", False),
    ("ess_per_1k", "ESS / 1k grads", "{:.3g}", False),
    ("log_z_err", "log Z err", "{:.3g}", True),
    ("divergent", "div.", "{:.0f}", None),
    ("wall_s", "wall (s)", "{:.1f}", None),
]

# Plotted against the budget, where the target has them.
CURVE_METRICS = [("w2", "W2"), ("mode_tv", "mode-weight TV"), ("mean_err", "mean error (sd)"), ("ksd", "KSD")]


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _cell(values: list[float], fmt: str) -> str:
    values = _finite(values)
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"


def _table(by_sampler: dict[str, list[dict]], floor: list[dict]) -> list[str]:
    present = [c for c in COLUMNS if any(_finite(r.get(c[0]) for r in rs) for rs in [*by_sampler.values(), floor])]
    lines = ["| sampler | " + " | ".join(h for _, h, _, _ in present) + " |", "|---|" + "---|" * len(present)]
    means = {c: {s: (np.mean(_finite(r.get(c) for r in rs)) if _finite(r.get(c) for r in rs) else None)
                 for s, rs in by_sampler.items()} for c, *_ in present}
    for sampler, runs in by_sampler.items():
        cells = []
        for column, _, fmt, smaller in present:
            text = _cell([r.get(column) for r in runs], fmt)
            ranked = [v for v in means[column].values() if v is not None]
            if smaller is not None and ranked and means[column][sampler] is not None and len(by_sampler) > 1:
                best = min(ranked) if smaller else max(ranked)
                if means[column][sampler] == best:
                    text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    if floor:
        cells = [_cell([r.get(c) for r in floor], fmt) if c not in ("n_grad", "wall_s", "divergent") else "–"
                 for c, _, fmt, _ in present]
        lines.append(f"| *{FLOOR}* | " + " | ".join(f"*{c}*" for c in cells) + " |")
    return lines


def markdown_report(rows: list[dict], skipped: dict | None = None) -> str:
    """A section per target, a table per budget: mean ± sd over seeds, best per column in bold, the floor row."""
    by_target: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_target[row["target"]].append(row)
    lines = []
    for target, target_rows in by_target.items():
        floor = [r for r in target_rows if r["sampler"] == FLOOR]
        runs = [r for r in target_rows if r["sampler"] != FLOOR]
        dim = target_rows[0]["dim"]
        n = target_rows[0]["num_particles"]
        lines += [f"## {target} (d = {dim})", ""]
        if skipped and skipped.get(target):
            lines += [f"Not applicable here: {', '.join(skipped[target])}.", ""]
        budgets = sorted({r["budget"] for r in runs})
        for budget in budgets:
            groups: dict[str, list[dict]] = defaultdict(list)
            for r in runs:
                if r["budget"] == budget:
                    groups[r["sampler"]].append(r)
            seeds = max(len(v) for v in groups.values())
            lines += [f"### {target}: budget {budget} gradients per particle, N = {n}, {seeds} seed(s)", ""]
            lines += _table(groups, floor) + [""]
        if not budgets and floor:
            lines += _table({}, floor) + [""]
    return "\n".join(lines)


def _density_grid(target, samples: list[np.ndarray], points: int = 200):
    import jax

    stacked = np.concatenate([s[np.all(np.isfinite(s), axis=1)] for s in samples])
    lo, hi = np.quantile(stacked, 0.005, axis=0), np.quantile(stacked, 0.995, axis=0)
    pad = 0.15 * (hi - lo) + 1e-3
    lo, hi = lo - pad, hi + pad
    xs, ys = np.linspace(lo[0], hi[0], points), np.linspace(lo[1], hi[1], points)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    log_p = np.asarray(jax.jit(jax.vmap(target.logdensity))(grid), np.float64)
    if target.nonsmooth is not None:
        log_p = log_p - np.asarray(jax.vmap(target.nonsmooth.value)(grid), np.float64)
    if target.support is not None:
        log_p = np.where(np.asarray(jax.vmap(target.support)(grid)), log_p, -np.inf)
    return xs, ys, log_p.reshape(points, points), (lo, hi)


def plot_samples(target, finals: dict[str, np.ndarray], path: pathlib.Path, title: str) -> None:
    """One panel per sampler: its final particles over the density's contours (2-D targets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(finals)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    xs, ys, log_p, (lo, hi) = _density_grid(target, list(finals.values()))
    finite = np.isfinite(log_p)
    # Contours 0.5, 1, ..., 3.5 "standard deviations" below the peak: log p = max - k^2 / 2.
    peak = log_p[finite].max() if finite.any() else 0.0
    levels = peak - 0.5 * np.arange(3.5, 0.0, -0.5) ** 2
    for ax, name in zip(axes.flat, names):
        ax.contour(xs, ys, np.where(finite, log_p, log_p[finite].min() if finite.any() else 0), levels=levels,
                   colors="0.6", linewidths=0.6)
        points = finals[name]
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color="C3" if name == FLOOR else "C0")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_curves(rows: list[dict], target_name: str, path: pathlib.Path) -> None:
    """Metric vs gradient budget, one line per sampler (mean over seeds), the floor as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["target"] == target_name and r["sampler"] != FLOOR]
    floor = [r for r in rows if r["target"] == target_name and r["sampler"] == FLOOR]
    present = [(m, label) for m, label in CURVE_METRICS if _finite(r.get(m) for r in runs)]
    if not present or not runs:
        return
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    samplers = list(dict.fromkeys(r["sampler"] for r in runs))
    for ax, (metric, label) in zip(axes.flat, present):
        for i, sampler in enumerate(samplers):
            points = defaultdict(list)
            for r in runs:
                if r["sampler"] == sampler and _finite([r.get(metric)]):
                    points[r["budget"]].append(float(r[metric]))
            if points:
                budgets = sorted(points)
                ax.plot(budgets, [np.mean(points[b]) for b in budgets], marker="o", ms=3, label=sampler,
                        color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
        floor_values = _finite(r.get(metric) for r in floor)
        if floor_values:
            ax.axhline(np.mean(floor_values), color="k", linestyle=":", label=FLOOR)
        ax.set_xscale("log")
        ax.set_xlabel("gradients per particle")
        ax.set_title(label, fontsize=10)
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.suptitle(target_name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
