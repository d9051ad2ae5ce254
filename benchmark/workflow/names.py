"""The workflow's names: roles, variant and file names, the architecture keys, the tables and figures and their
formats. What :mod:`benchmark.report` and :mod:`benchmark.privacy` may import from the workflow (no grid logic,
nothing above the config), so the report reads a ``grid.json`` with the same vocabulary that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from benchmark import config
from benchmark.study import BASELINE, UNDER_STUDY

ARCH_KEYS = ("backbone",) + config.ARCH_KEYS
"""``model`` keys a backbone entry owns: the timm name and its architecture overrides
(:data:`benchmark.config.ARCH_KEYS`); split and prompt keys belong in ``run.model``."""
ARCH_SETTINGS = tuple(f"model.{k}" for k in ARCH_KEYS)
"""The same keys as a run's dotted settings."""
METHOD_PARAMS = "method_params."
"""Prefix of a method's own hyper-parameters in a run's dotted settings."""
POOLED = "pooled"
"""Partition label of the reference runs on the pooled training data (one client holds every sample)."""
POOLED_PARTITION = {"scheme": "iid", "num_clients": 1, "min_partition_size": 0}
STRENGTH = "strength"
"""Role kind (and workflow section) of the backbone-strength runs: methods fine-tuning pre-training checkpoints."""
NOISE = "noise"
"""Role kind of the noise defence's training runs (privacy section)."""
RUNNER_UP = "runner_up"
"""Role kind of the learning-rate recheck runs (``tuning.recheck``): the method under study and the reference
method trained at their search's runner-up rate, so that a verdict stands only where it holds at both rates."""
NOISE_KEY = "method_params.smashed_noise_sigma"
"""The split methods' noise-defence knob (:class:`benchmark.federation.params.SplitParams`): the privacy section
trains a variant of each privacy method at every σ > 0 of ``privacy.noise_sigma`` (role ``noise``)."""
SENSITIVITY_KEYS = {"keep_ratio": ("method_params.keep_ratio",), "prompt_len": ("model.prompt_len",),
                    "split": ("model.head_blocks", "model.tail_blocks")}
"""The one-at-a-time sensitivity sweeps of the method under study: parameter -> the settings it sets."""
RULES = ("cache", "partition", "pretrain", "train", "accounting", "system", "privacy", "report")
TABLES: dict[str, str | None] = {"accuracy": None, "paired": None, "resources": None, "ablation": "ablation",
                                  "claims": None, "sensitivity": "sensitivity", "time_to_target": None,
                                  "system_rounds": None, "crossover": None, "privacy": None,
                                  "strength": STRENGTH, "tuning": "tuning"}
"""The report's tables in order, each with the run role it needs (None: always rendered; ``tuning``: rendered when
the profile has a ``tuning`` section). Their renderers are registered in :data:`benchmark.report.outputs.OUTPUTS`
under the same names."""
FIGURES: dict[str, str | None] = {"accuracy_vs_round": None, "accuracy_vs_comm": None, "flops_vs_accuracy": None,
                                  "partitions": None, "sensitivity": "sensitivity", "accuracy_vs_time": None,
                                  "privacy_reconstructions": None, "privacy_frontier": None,
                                  "strength": STRENGTH}
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("pdf", "png")


@dataclass(frozen=True)
class Role:
    """Why a run is in the grid: ``method`` (name), ``ablation`` (name), ``sensitivity`` (param, value),
    ``strength`` (checkpoint label ``B@PCT`` or ``B``, fraction of the pre-training budget), ``noise`` (method, σ),
    ``runner_up`` (method) or ``reference`` (name, label)."""

    kind: str
    name: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "value": self.value}


def split_label(split: Iterable[int]) -> str:
    """``(1, 2)`` -> ``h1t2``."""
    head, tail = split
    return f"h{head}t{tail}"


def fmt_value(value: Any) -> str:
    """A value as it appears in a name: a split as its label, a float in ``%g``."""
    if isinstance(value, (list, tuple)):
        return split_label(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def checkpoint_label(backbone: str, fraction: float) -> str:
    """Stem of a pre-training checkpoint's weights and card in ``backbones/``: ``B`` at the end of pre-training
    (fraction 1.0), else ``B@PCT`` with PCT the integer percent of the epoch budget (``tiny@10`` for 0.1), as the
    pretrain rule names them."""
    return backbone if round(100 * fraction) >= 100 else f"{backbone}@{round(100 * fraction)}"


def variant_name(role: Role, method: str) -> str:
    """The one naming scheme of a run's variant (its folder under the cell) from the role that puts it in the grid:

    - ``method``, ``ablation``, ``reference``: the name (``fedavg``, ``no_pruning``, ``centralized_ft``);
    - ``sensitivity``: ``{UNDER_STUDY}-{param}{value}`` (``sfprompt-keep_ratio0.25``), or
      ``{UNDER_STUDY}-split_h{H}t{T}`` for the split;
    - ``strength``: the method at the end of pre-training, else ``{method}@{pct}`` (``fedavg@10``);
    - ``noise``: ``{method}-noise{σ}`` (``sfl_v2-noise0.5``);
    - ``runner_up``: ``{method}-runner_up`` (``fedavg-runner_up``).
    """
    if role.kind in ("method", "ablation", "reference"):
        return role.name
    if role.kind == "sensitivity":
        label = f"split_{role.value}" if role.name == "split" else f"{role.name}{fmt_value(role.value)}"
        return f"{UNDER_STUDY}-{label}"
    if role.kind == STRENGTH:
        return method if "@" not in role.name else f"{method}@{role.name.rsplit('@', 1)[1]}"
    if role.kind == NOISE:
        return f"{role.name}-noise{fmt_value(float(role.value))}"
    if role.kind == RUNNER_UP:
        return f"{role.name}-{RUNNER_UP}"
    raise ValueError(f"unknown run role kind {role.kind!r}")


def tuning_file(backbone: str, dataset: str, search: str) -> str:
    """The tuning record of a (backbone, dataset, search), relative to the results root."""
    return f"tuning/{backbone}/{dataset}/{search}.json"


def split_file(kind: str, label: str, split: Iterable[int], ext: str) -> str:
    """``{kind}/{label}_h{H}t{T}.{ext}``: an accounting, system or privacy output of a backbone at a split."""
    return f"{kind}/{label}_{split_label(split)}.{ext}"


__all__ = ["UNDER_STUDY", "BASELINE", "ARCH_KEYS", "ARCH_SETTINGS", "METHOD_PARAMS", "POOLED", "POOLED_PARTITION",
           "STRENGTH", "NOISE", "RUNNER_UP", "NOISE_KEY", "SENSITIVITY_KEYS", "RULES", "TABLES", "FIGURES",
           "TABLE_FORMATS", "FIGURE_FORMATS", "Role", "split_label", "fmt_value", "checkpoint_label", "variant_name",
           "tuning_file", "split_file"]
