"""The report's output registry: every table and figure declared once, with the function that selects its inputs.

A renderer module (``build.py`` for the core tables and figures, ``system.py`` for time to accuracy, ...)
decorates one function per output with :func:`output`; ``build.py`` imports them all and renders what the
workflow's ``TABLES`` / ``FIGURES`` name. Kept apart from ``build.py`` so that renderer modules import the
registry without importing the builder (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from benchmark.registry import Registry
from benchmark.report.load import Results


@dataclass
class Sources:
    """What one output is drawn from: run summaries (``runs``) and other result files."""

    runs: pd.DataFrame
    files: list[dict[str, str]] = field(default_factory=list)

@dataclass(frozen=True)
class Output:
    """One table or figure of the report: where its inputs come from and how it is drawn.

    Attributes:
        kind: ``table`` or ``figure``.
        name: File stem (``tables/{name}.*``, ``figures/{name}.*``); a table and a figure may share it.
        sources: Results -> the runs and files behind the output (the manifest lists exactly these).
        render: (results, sources) -> a :class:`~benchmark.report.tables.Table` or a matplotlib ``Figure``.
    """

    kind: str
    name: str
    sources: Callable[[Results], Sources]
    render: Callable[[Results, Sources], Any]


OUTPUTS: dict[str, Registry[Output]] = {"table": Registry("table"), "figure": Registry("figure")}
"""Every output of the report, by kind and name: the one place a table or figure is declared (a new one is a
decorated function in a renderer module that ``build.py`` imports, plus its name in the workflow's ``TABLES``
/ ``FIGURES``). Nothing else branches on an output's name."""


def output(kind: str, name: str, sources: Callable[[Results], Sources]):
    """Decorator: register ``render(results, sources)`` as the ``kind`` output ``name``."""

    def deco(render: Callable[[Results, Sources], Any]) -> Callable[[Results, Sources], Any]:
        OUTPUTS[kind].register(name)(Output(kind, name, sources, render))
        return render

    return deco
