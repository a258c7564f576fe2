"""A sweep's results as files a user can open and send on: ``sweep.json``, ``sweep.csv``, three
PNG plots and ``report.md`` that shows them with the table. Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tvmc_mobilenet.files import atomic_write
from tvmc_mobilenet.sweep.results import RESULTS_CSV, RESULTS_JSON, SweepResult

CSV_COLUMNS = (
    "alpha",
    "resolution",
    "mult_adds",
    "params",
    "top1",
    "top1_source",
    "latency_median_ms",
    "latency_p90_ms",
    "throughput_per_s",
    "gflops",
    "trials_run",
    "trials_reused",
)
PLOTS = {
    "latency_vs_mult_adds": "latency_vs_mult_adds.png",
    "accuracy_vs_latency": "accuracy_vs_latency.png",
    "latency_vs_params": "latency_vs_params.png",
}
REPORT = "report.md"


def write_results(out: Path, result: SweepResult, plots: bool) -> None:
    atomic_write(out / RESULTS_JSON, (json.dumps(result.to_json(), indent=2) + "\n").encode())
    atomic_write(out / RESULTS_CSV, csv_text(result).encode())
    if plots and result.rows:
        for kind, file in PLOTS.items():
            atomic_write(out / file, plot_png(result, kind))
        atomic_write(out / REPORT, markdown_report(result).encode())


def csv_text(result: SweepResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow(row.to_json())
    return buffer.getvalue()


def pareto_front(rows) -> list:
    """The models no other model beats on both latency and published accuracy (fastest first)."""
    ranked = sorted((r for r in rows if r.top1 is not None), key=lambda r: (r.latency_median_ms, -r.top1))
    front, best = [], -1.0
    for row in ranked:
        if row.top1 > best:
            front.append(row)
            best = row.top1
    return front


def plot_png(result: SweepResult, kind: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    target = result.config.target.name
    fig, ax = plt.subplots(figsize=(7.5, 5))
    alphas = sorted({r.alpha for r in rows}, reverse=True)
    if kind in ("latency_vs_mult_adds", "latency_vs_params"):
        x_of = (lambda r: r.mult_adds / 1e6) if kind == "latency_vs_mult_adds" else (lambda r: r.params / 1e6)
        for i, alpha in enumerate(alphas):
            line = sorted((r for r in rows if r.alpha == alpha), key=x_of)
            ax.plot([x_of(r) for r in line], [r.latency_median_ms for r in line], "o-", color=f"C{i}", label=f"α = {alpha:g}")
            for r in line:
                ax.annotate(str(r.resolution), (x_of(r), r.latency_median_ms), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Mult-Adds (millions, log)" if kind == "latency_vs_mult_adds" else "parameters (millions, log)")
        ax.set_ylabel(f"latency on {target} (ms, median, log)")
        ax.set_title(f"MobileNet v1 on {target}: latency vs {'Mult-Adds' if kind == 'latency_vs_mult_adds' else 'parameters'}")
        ax.legend(title="width multiplier (labels: resolution)")
    else:  # accuracy_vs_latency
        for i, alpha in enumerate(alphas):
            line = [r for r in rows if r.alpha == alpha and r.top1 is not None]
            ax.scatter([r.latency_median_ms for r in line], [r.top1 for r in line], color=f"C{i}", label=f"α = {alpha:g}")
            for r in line:
                ax.annotate(str(r.resolution), (r.latency_median_ms, r.top1), textcoords="offset points", xytext=(4, 3), fontsize=7)
        front = pareto_front(rows)
        if front:
            ax.step([r.latency_median_ms for r in front], [r.top1 for r in front], "k--", where="post", lw=1, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(f"latency on {target} (ms, median, log)")
        ax.set_ylabel("published ImageNet top-1 (%)")
        ax.set_title(f"MobileNet v1: published accuracy vs latency on {target}")
        ax.legend(title="labels: resolution")
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            _plain_log_ticks(axis)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2, 5 × 10^k labelled as plain numbers (0.5, 2, 100), not 5×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def table_rows(result: SweepResult) -> list[list[str]]:
    """The terminal/Markdown table: one row per model."""
    out = []
    for r in result.rows:
        top1 = f"{r.top1:.1f}" + ("" if r.top1_source is None or r.top1_source.startswith("paper") else "*") if r.top1 is not None else "-"
        out.append(
            [
                f"{r.alpha:g}",
                str(r.resolution),
                f"{r.mult_adds / 1e6:.0f}M",
                f"{r.params / 1e6:.2f}M",
                top1,
                f"{r.latency_median_ms:.3f}",
                f"{r.latency_p90_ms:.3f}",
                f"{r.throughput_per_s:.0f}",
                f"{r.gflops:.1f}",
                str(r.trials_run + r.trials_reused),
            ]
        )
    return out


TABLE_HEADER = ["α", "res", "Mult-Adds", "params", "top-1 %", "median ms", "p90 ms", "img/s", "GFLOP/s", "trials"]


def markdown_report(result: SweepResult) -> str:
    config = result.config
    how = f"tuned, {config.trials_per_model} trials per model" if config.trials_per_model else "untuned (our default schedules)"
    lines = [
        f"# MobileNet v1 α × resolution sweep on `{config.target.name}`",
        "",
        f"{len(result.rows)} models, {how}; latency: median of {config.timing.repeat} samples of {config.timing.number} runs each, "
        "batch 1, "
        f"in the fastest of {config.rounds} rounds over the grid (rounds interleave the models, so a burst of other load "
        "on the machine does not land on one model alone).",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    lines += [
        "",
        "Top-1: published ImageNet accuracy of the trained MobileNet v1 weights (not measured here): the paper's "
        "Tables 6 and 7 where they give the point, else the TF-slim release (marked *).",
        "",
    ]
    front = pareto_front(result.rows)
    if front:
        lines += [
            "**Pareto front** (no other model is both faster and more accurate): "
            + ", ".join(f"{r.name} ({r.latency_median_ms:.3f} ms, {r.top1:.1f}%)" for r in front),
            "",
        ]
    if result.transfer:
        t = result.transfer
        lines += [
            f"**Tuning shared across the grid**: {t['distinct_tasks']} distinct tasks among {t['tasks_summed_over_models']} "
            f"model tasks; {t['trials_reused_from_other_models']} trials reused from other models' records "
            f"(~{t['estimated_seconds_saved']:.0f} s of tuning saved at this sweep's rate), {t['trials_run']} run.",
            "",
        ]
    for kind, file in PLOTS.items():
        lines += [f"![{kind.replace('_', ' ')}]({file})", ""]
    return "\n".join(lines)
