"""Write benchmark results: one CSV row per run, a Markdown table per target."""

from __future__ import annotations

import csv
import pathlib
from collections import defaultdict

import numpy as np

__all__ = ["write_csv", "markdown_report"]

# Column, header, format, and whether smaller is better.
COLUMNS = [
    ("n_grad", "gradient evals", "{:.0f}", None),
    ("mean_err", "mean err (sd)", "{:.3f}", True),
    ("cov_err", "cov err (rel.)", "{:.3f}", True),
    ("ess_per_1k", "ESS / 1k grads", "{:.2f}", False),
    ("divergent", "divergent", "{:.0f}", True),
    ("wall_s", "wall (s)", "{:.1f}", True),
]


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    fields = list(rows[0])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _cell(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"


def markdown_report(rows: list[dict]) -> str:
    """A table per (target, budget): mean ± sd over seeds, best per column in bold."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["target"], row["dim"], row["budget"])][row["sampler"]].append(row)
    lines = []
    for (target, dim, budget), by_sampler in groups.items():
        seeds = max(len(r) for r in by_sampler.values())
        lines += [f"### {target} (d = {dim}), {budget} gradient evaluations per chain, {seeds} seed(s)", ""]
        lines.append("| sampler | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |")
        lines.append("|---|" + "---|" * len(COLUMNS))
        means = {c: {s: np.mean([r[c] for r in rs]) for s, rs in by_sampler.items()} for c, *_ in COLUMNS}
        for sampler, runs in by_sampler.items():
            cells = []
            for column, _, fmt, smaller in COLUMNS:
                text = _cell([r[column] for r in runs], fmt)
                best = (min if smaller is not False else max)(means[column].values())
                if column not in ("n_grad", "wall_s", "divergent") and means[column][sampler] == best:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
