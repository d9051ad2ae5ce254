"""The ``strength`` section: methods fine-tuning checkpoints saved part-way along the backbone's pre-training
(variant ``{method}@{pct}``, the run's backbone label unchanged); at 100% a strength point *is* the method's run of
the main grid (one more role, no job). A part of :class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

from typing import Any, Iterator

from benchmark.config import from_dict
from benchmark.errors import ConfigError
from benchmark.overrides import unflatten
from benchmark.workflow.names import STRENGTH, Role, checkpoint_label
from benchmark.workflow.runs import Candidate, Run, WorkflowState


class StrengthSection(WorkflowState):
    """Backbone-strength points: checks, candidates, checkpoints and cards."""


    def _check_strength(self) -> None:
        """``strength``: its methods are the grid's, and its backbones are pre-trained in the workflow (hub weights
        have no trajectory to checkpoint) and save every checkpoint it lists (``pretrain.checkpoints``)."""
        section = self.doc[STRENGTH]
        if not section.get("checkpoints"):
            return
        for method in section.get("methods", []):
            if method not in self.methods:
                raise ConfigError(f"workflow config key 'strength.methods': {method!r} is not in methods "
                                  f"({', '.join(self.methods)})")
        for b in section.get("scope", {}).get("backbones", []):
            if self.backbones[b]["weights"] != "pretrain":
                raise ConfigError(f"workflow config key 'strength.scope.backbones': {b!r} has weights "
                                  f"{self.backbones[b]['weights']!r}, not pretrain; backbone strength fine-tunes "
                                  f"checkpoints of a pre-training run in the workflow, which hub weights do not have")
        if not self.strength_backbones():
            raise ConfigError("workflow config key 'strength': no backbone in its scope is pre-trained in the "
                              "workflow (weights: pretrain); hub weights have no pre-training checkpoints, so remove "
                              "the section")
        for b in self.strength_backbones():
            saved = from_dict(unflatten(self._pretrain_settings(b))).pretrain.checkpoints
            labels = {checkpoint_label(b, c) for c in saved} | {b}
            for fraction in section["checkpoints"]:
                if checkpoint_label(b, fraction) not in labels:
                    raise ConfigError(f"workflow config key 'strength.checkpoints': {fraction:g} is not a checkpoint "
                                      f"that pre-training saves (backbones.{b}.pretrain.checkpoints: "
                                      f"{', '.join(f'{c:g}' for c in saved) or 'none'}); add it there (no extra "
                                      f"pre-training)")

    def strength_backbones(self) -> list[str]:
        """Backbones whose pre-training checkpoints ``strength`` fine-tunes: the pre-trained ones in its scope
        (none without checkpoints)."""
        section = self.doc[STRENGTH]
        if not section.get("checkpoints"):
            return []
        return [b for b in section.get("scope", {}).get("backbones", self.backbones)
                if self.backbones[b]["weights"] == "pretrain"]

    def strength_fractions(self) -> list[float]:
        """The strength points, ascending: the listed checkpoints and 1.0 (the end of pre-training, whose runs
        are the main grid's)."""
        return sorted({f for f in self.doc[STRENGTH].get("checkpoints", []) if round(100 * f) < 100} | {1.0})

    def _strength_candidates(self, cell: tuple) -> Iterator[Candidate]:
        """Each strength method at each checkpoint of the cell's backbone; at 1.0 its settings are the method
        run's, so the expansion reuses that run (one more role, no job)."""
        backbone = cell[0]
        if backbone not in self.strength_backbones() or not self._in_scope(STRENGTH, *cell):
            return
        for method in self.doc[STRENGTH].get("methods", self.methods):
            sets = self.method_sets(method)
            for fraction in self.strength_fractions():
                label = checkpoint_label(backbone, fraction)
                weights = {} if label == backbone else {
                    "model.weights": f"file:{self.path(f'backbones/{label}.safetensors')}"}
                yield method, {**sets, **weights}, Role(STRENGTH, label, fraction)

    @staticmethod
    def checkpoint_of(run: Run) -> str:
        """The pre-training checkpoint a run fine-tunes (a strength point's, else the end of pre-training)."""
        return checkpoint_label(run.backbone, min((r.value for r in run.roles if r.kind == STRENGTH), default=1.0))

    def strength_cards(self) -> list[str]:
        """The cards (source-dataset accuracy) of the checkpoints the strength table and figure plot."""
        return [self.path(c["card"]) for c in self._strength_points()]

    def _strength_points(self) -> list[dict[str, Any]]:
        return [{"backbone": b, "fraction": f, "label": checkpoint_label(b, f),
                 "card": f"backbones/{checkpoint_label(b, f)}.json"}
                for b in self.strength_backbones() for f in self.strength_fractions()]


__all__ = ["StrengthSection"]
