"""Data and backbone jobs: the decoded-data cache, the partitions and the pre-training of each backbone (with its
checkpoints for the strength section). A part of :class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.backbone_cache import checkpoint_pct
from benchmark.config import DECLARATION_KEYS, RunConfig, cache_file_name, from_dict
from benchmark.errors import ConfigError
from benchmark.overrides import set_args, unflatten
from benchmark.workflow.names import ARCH_SETTINGS
from benchmark.workflow.runs import WorkflowState


def _input_size(cfg: RunConfig) -> int:
    """The backbone's input resolution from timm's pretrained config, for a profile that sets no ``img_size``."""
    from benchmark.models.vit import input_spec  # deferred: torch; a profile with img_size never calls this

    return input_spec(cfg.model)[0]


class DataSection(WorkflowState):
    """The cache, partition and pretrain rules' settings, arguments and inputs."""


    def _partition_settings(self, wc: Any) -> dict[str, Any]:
        """The partition depends on labels only: any backbone's cell settings, weights from scratch."""
        backbone = next(iter(self.backbones))
        cell = self._cell_settings(backbone, wc.dataset, wc.partition, int(wc.seed))
        cell["model.weights"] = "scratch"
        keep = ("device", "seed", "data.", "partition.") + ARCH_SETTINGS
        return self._resolve(f"partition {wc.dataset}/{wc.partition}", cell, keep=keep)

    def partition_args(self, wc: Any) -> str:
        return set_args(self._partition_settings(wc))

    def partition_input(self, wc: Any) -> dict[str, str]:
        return {"cache": self.cache_file(from_dict(unflatten(self._partition_settings(wc))))}

    def _pretrain_settings(self, backbone: str) -> dict[str, Any]:
        """Pre-training: the backbone's architecture from scratch, its ``pretrain`` section, seed 0."""
        b = self.backbones[backbone]
        sets = {**self._backbone_settings(backbone), "model.weights": "scratch",
                **{f"pretrain.{k}": v for k, v in b["pretrain"].items()}}
        keep = ("device", "data.data_root", "data.cache_dir", "data.cache_img_size", "pretrain.",
                "model.weights") + ARCH_SETTINGS
        return self._resolve(f"backbones.{backbone}.pretrain", sets, keep=keep)

    def pretrain_args(self, wc: Any) -> str:
        return set_args(self._pretrain_settings(wc.backbone))

    def checkpoint_pcts(self) -> list[int]:
        """The percents of ``pretrain.checkpoints`` below 100 (100 is ``{backbone}.safetensors`` itself), shared
        by every pre-trained backbone: the pretrain rule declares one output per percent."""
        pcts = {b: sorted({checkpoint_pct(f) for f in self.backbones[b]["pretrain"].get("checkpoints", [])} - {100})
                for b in self.pretrained()}
        distinct = {tuple(p) for p in pcts.values()}
        if len(distinct) > 1:
            raise ConfigError(f"workflow config key 'backbones.*.pretrain.checkpoints': every pre-trained backbone "
                              f"lists the same checkpoint percents (the pretrain rule's outputs); got "
                              f"{', '.join(f'{b}: {p}' for b, p in pcts.items())}")
        return list(distinct.pop()) if distinct else []

    def checkpoint_files(self, backbone: str) -> list[str]:
        """``backbones/{backbone}@{pct}.{safetensors,json}`` of every checkpoint percent below 100."""
        return [self.path(f"backbones/{backbone}@{p}.{x}") for p in self.checkpoint_pcts()
                for x in ("safetensors", "json")]

    def pretrain_input(self, wc: Any) -> dict[str, str]:
        return {"cache": self._pretrain_cache(wc.backbone)}

    def _pretrain_cache(self, backbone: str) -> str:
        cfg = from_dict(unflatten(self._pretrain_settings(backbone)))
        return self.cache_file(cfg, cfg.pretrain.dataset)

    @staticmethod
    def cache_file(cfg: RunConfig, dataset: str | None = None) -> str:
        """The decoded-data cache a job reads (the ``cache`` rule's output): ``dataset`` (default
        ``cfg.data.dataset``) at ``data.cache_img_size``, else the model's input size."""
        size = cfg.data.cache_size(lambda: cfg.model.img_size or _input_size(cfg))
        return str(Path(cfg.data.cache_dir) / cache_file_name(dataset or cfg.data.dataset, size))

    def cache_dirs(self) -> list[str]:
        """Every cache folder a job reads (one, unless a dataset entry sets its own ``cache_dir``)."""
        files = [self.cache_file(r.config()) for r in self.runs.values()]
        files += [self._pretrain_cache(b) for b in self.pretrained()]
        return sorted({str(Path(f).parent) for f in files})

    def cache_args(self, wc: Any) -> str:
        """The cache rule's ``--set`` arguments: the dataset's declaration (``data.source``, columns, splits,
        ...) and the mirror folder, where the profile sets them (the dataset's entry first, then ``run.data``);
        nothing else changes the decoded arrays. A Snakemake param, so a changed declaration re-decodes."""
        data = {**self.base.get("data", {}), **self.datasets.get(wc.dataset, {})}
        keys = ("data_root",) + DECLARATION_KEYS
        return set_args({f"data.{k}": data[k] for k in keys if data.get(k) is not None})

    def pretrained(self) -> list[str]:
        return [b for b, spec in self.backbones.items() if spec["weights"] == "pretrain"]


__all__ = ["DataSection"]
