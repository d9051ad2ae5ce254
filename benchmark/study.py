"""What the suite studies, declared once: the method under study and the baseline every comparison is made against.

The workflow's ablations and sensitivity sweeps are variants of :data:`UNDER_STUDY`; the paired-difference,
resources and claims tables, the analytic accounting's reduction column and the crossover analysis compare
against :data:`BASELINE`. Both are registry names (:mod:`benchmark.methods`).
"""

from __future__ import annotations

UNDER_STUDY = "sfprompt"
"""SFPrompt (Cao, Zhu, Gong, arXiv 2407.17533)."""
BASELINE = "fedavg"
"""Federated full fine-tuning (FedAvg): the paper's reference for accuracy and cost."""

__all__ = ["UNDER_STUDY", "BASELINE"]
