"""Draw the front page's figure from the accuracy table in docs/results.md (the default profile's measured run).

    python scripts/docs_figure.py            # -> docs/img/default-accuracy.png

The table there is the default run's ``results/tables/accuracy.md``, copied with the commit it was measured at;
this script only redraws it (final test accuracy, mean ± 95% CI over seeds, one panel per dataset and
partition), so the figure and the table cannot disagree. ``tests/test_docs.py`` checks that the committed PNG is
what this script draws from the committed table.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.methods import method_class, ordered  # noqa: E402 (the checkout's package, not an installed one)
from benchmark.report.figures import _grid, method_style  # noqa: E402

TABLE = ROOT / "docs" / "results.md"
OUT = ROOT / "docs" / "img" / "default-accuracy.png"
CELL = re.compile(r"^\s*(-?[\d.]+)\s*±\s*([\d.]+)\s*$")


def accuracy_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table whose header starts with ``Dataset | Partition``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*Dataset\s*\|\s*Partition\s*\|", line))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[0], rows[2:]


def accuracy_figure(header: list[str], rows: list[list[str]]) -> Figure:
    """One panel per (dataset, partition): each column's mean as a dot with its 95% CI, methods top to bottom."""
    labels = {method_class(m).label: m for m in ordered()}
    columns = header[2:]
    fig, axes = _grid(len(rows), ncols=2, size=(4.2, 2.9), sharey=True)
    for ax, row in zip(axes, rows):
        for y, (column, text) in enumerate(zip(columns, row[2:])):
            mean, half = map(float, CELL.match(text).groups())
            name = labels.get(column)
            style = method_style(name) if name else {"color": "#777777", "marker": "o"}
            ax.errorbar(mean, y, xerr=half, fmt=style["marker"], color=style["color"], capsize=3)
        ax.set_yticks(range(len(columns)), columns, fontsize=8)
        ax.set_title(f"{row[0]} · {row[1]}", fontsize=9)
        ax.set_xlabel("final test accuracy (%)")
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()  # once: the panels share their y axis
    fig.suptitle("Default profile: final test accuracy, mean ± 95% CI over 3 seeds\n(grey: centralized training on "
                 "the pooled data; the linear probe is pooled too)", fontsize=10)
    return fig


def main() -> int:
    header, rows = accuracy_table(TABLE.read_text())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    accuracy_figure(header, rows).savefig(OUT, dpi=110, metadata={"Software": None})
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
