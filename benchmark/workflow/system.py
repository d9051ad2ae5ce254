"""The ``system`` section: simulated time and energy on real devices and links, from one usage file per
accounting table (the ``system`` rule; :mod:`benchmark.system`). A part of
:class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

from typing import Any

from benchmark.system.plan import system_section
from benchmark.workflow.names import split_file
from benchmark.workflow.runs import WorkflowState


class SystemSection(WorkflowState):
    """The system section's settings (defaults filled in) and the system rule's targets."""


    def _system_settings(self) -> dict[str, Any]:
        """The ``system`` section with its defaults (:func:`benchmark.system.plan.system_section`)."""
        return system_section(self.doc)

    def system_targets(self) -> list[str]:
        """One usage CSV per accounting table (the ``system`` rule: paper-scale time and energy inputs)."""
        return [self.path(split_file("system", a.label, a.split, "csv")) for a in self.accounting.values()]


__all__ = ["SystemSection"]
