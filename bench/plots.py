"""PNG plots for docs/benchmarks.md, where a curve reads better than a table (matplotlib, small files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def scaling_plot(cases: list[dict[str, Any]], path: Path, peak_goal_bytes: float) -> Path:
    """Two panels over audio length (log scale): x real time, and peak RSS against the memory goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed_ax, memory_ax) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    styles = {"chunked": ("tab:blue", "o", "chunked (VAD, <= 20 s)"), "one pass": ("tab:red", "s", "one pass")}
    for mode, (color, marker, label) in styles.items():
        points = sorted((c["length"] / 60, c["x_realtime"], c["peak_rss"] / 1e9) for c in cases if c["mode"] == mode)
        if not points:
            continue
        minutes, speed, peak = zip(*points, strict=True)
        speed_ax.plot(minutes, speed, marker=marker, color=color, label=label)
        memory_ax.plot(minutes, peak, marker=marker, color=color, label=label)
    memory_ax.axhline(peak_goal_bytes / 1e9, color="grey", linestyle="--", linewidth=1, label="goal")
    for ax, title in ((speed_ax, "speed (x real time, higher is better)"), (memory_ax, "peak RSS (GB)")):
        ax.set_xscale("log")
        ax.set_xlabel("audio length (minutes)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def tuning_plot(rows: list[tuple[str, float, float]], path: Path) -> Path:
    """Horizontal bars: x real time per engine configuration (label, x real time, peak RSS GB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r[0] for r in rows][::-1]
    speed = [r[1] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.0), dpi=90)
    bars = ax.barh(labels, speed, color="tab:blue")
    for bar, value in zip(bars, speed, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.1f}", va="center", fontsize=8)
    ax.set_xlabel("x real time (higher is better)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
