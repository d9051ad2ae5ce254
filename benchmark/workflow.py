"""The Snakemake workflow's logic: validate its config, expand the run grid, and format each rule's CLI call.

The ``Snakefile`` is a table of contents; every rule is one ``python -m benchmark <verb>`` line whose
arguments come from here. A workflow config (``config/{smoke,default,paper}.yaml``) is checked against
``workflow/schemas/config.schema.yaml`` (one-line errors naming the key), then every run's
:class:`~benchmark.config.RunConfig` is built, so a bad config fails before any job starts.

The grid is backbones x datasets x partitions x seeds x variants. A *variant* is a method (its name), a named
SFPrompt ablation (``ablations.variants``), a one-at-a-time sensitivity point (``sensitivity``), each a
method plus RunConfig overrides, or a backbone-strength point (``strength``): a method fine-tuning a checkpoint
saved part-way along the backbone's pre-training (``{method}@{pct}``, the run's backbone label unchanged). Runs
of one cell whose resolved configs are identical are run once: a sensitivity point ``keep_ratio: 1.0`` *is* the
``no_pruning`` ablation and reuses its run, carrying both roles, and a strength point at 100% *is* the method's
run of the main grid. Paths (relative to ``results``)::

    cache/{dataset}-{size}px.safetensors                 (cache: decoded once; data.cache_dir if set)
    backbones/{backbone}.{safetensors,json}              (pretrain; only for weights: pretrain; copied from the
                                                          machine-wide backbone cache, see backbone_cache)
    backbones/{backbone}@{pct}.{safetensors,json}        (pretrain: the same trajectory at pct % of its epochs,
                                                          per pretrain.checkpoints < 1; card: test_accuracy)
    partitions/{dataset}/{partition}/seed{seed}.json     (shared by every backbone and variant)
    runs/{backbone}/{dataset}/{partition}/{variant}/seed{seed}/   (train)
    runs/{backbone}/{dataset}/{partition}/{method}@{pct}/seed{seed}/  (train: strength point; fine-tunes
                                                         backbones/{backbone}@{pct}, pct% of pre-training)
    accounting/{backbone}_h{H}t{T}.csv                   (accounting; no training)
    privacy/{backbone}_h{H}t{T}.{csv,npz}                (privacy: reconstruction attacks per split point)
    tuning/{backbone}/{dataset}/{method}/x{multiplier}/seed{seed}/  (a learning-rate grid point, validation; by
                                                          the tune job of its search)
    tuning/{backbone}/{dataset}/{method}.json            (tune: the search's choice; benchmark.tuning)
    grid.json, tables/, figures/, manifest.json          (report)

A run's settings reach the CLI as ``--set section.key=value`` arguments (the difference from RunConfig's
defaults), so they are Snakemake ``params``: editing the config reruns exactly the jobs whose settings changed.
With a ``tuning`` section, every run also reads its (backbone, dataset, method)'s tuning record as an input
and trains with its chosen learning rate (``train --lr-from``; :mod:`benchmark.tuning`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from benchmark.backbone_cache import checkpoint_pct, default_cache_dir
from benchmark.config import DECLARATION_KEYS, ModelConfig, RunConfig, cache_file_name, from_dict
from benchmark.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
"""The schema in a source checkout (the Snakefile passes its own copy explicitly)."""

ARCH_KEYS = ("backbone", "img_size", "patch_size", "embed_dim", "depth", "num_heads")
"""``model`` keys a backbone entry owns (split and prompt keys belong in ``run.model``)."""
GRID_KEYS = ("seed", "threads", "data.dataset", "train.method", "model.backbone", "model.weights",
             "partition.scheme", "method_params")
"""Keys the grid sets; the base ``run`` section may not."""
VARIANT_FORBIDDEN = ("seed", "threads", "data.", "partition.", "train.method", "model.weights") + tuple(
    f"model.{k}" for k in ARCH_KEYS)
"""Variants share a cell's partition and backbone, so they may not change data, partition or architecture."""
OPTIMISER_KEYS = ("train.lr", "train.momentum", "train.weight_decay", "train.grad_clip")
"""The optimiser keys ``method_settings`` may set; besides them only the method's own ``method_params.*``.
Anything else that changes cost belongs in ``run``, so the analytic accounting (one config for every method, plus
each method's own parameters) describes the runs."""
METHOD_PARAMS = "method_params."
POOLED = "pooled"
"""Partition label of the reference runs on the pooled training data (one client holds every sample)."""
POOLED_PARTITION = {"scheme": "iid", "num_clients": 1, "min_partition_size": 0}
ABLATED_METHOD = "sfprompt"
"""The method under study: ablations and sensitivity sweeps are variants of it (its ``method_settings`` apply)."""
RULES = ("cache", "partition", "pretrain", "train", "accounting", "system", "privacy", "report")
DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0}
STRENGTH = "strength"
"""Role kind (and workflow section) of the backbone-strength runs: methods fine-tuning pre-training checkpoints."""
NOISE_KEY = "method_params.smashed_noise_sigma"
"""The split methods' noise-defence knob (:class:`benchmark.federation.method.SplitParams`): the privacy section
trains a variant of each privacy method at every σ > 0 of ``privacy.noise_sigma`` (role ``noise``)."""
SENSITIVITY_KEYS = {"keep_ratio": ("method_params.keep_ratio",), "prompt_len": ("model.prompt_len",),
                    "split": ("model.head_blocks", "model.tail_blocks")}
TABLES: dict[str, str | None] = {"accuracy": None, "paired": None, "resources": None, "ablation": "ablation",
                                  "claims": None, "sensitivity": "sensitivity", "time_to_target": None,
                                  "system_rounds": None, "crossover": None, "privacy": None,
                                  "strength": STRENGTH}
TABLES["tuning"] = "tuning"  # rendered when the profile has a ``tuning`` section (see Workflow._role_kinds)
"""The report's tables in order, each with the run role it needs (None: always rendered). Their renderers are
registered in :data:`benchmark.report.outputs.OUTPUTS` under the same names."""
FIGURES: dict[str, str | None] = {"accuracy_vs_round": None, "accuracy_vs_comm": None, "flops_vs_accuracy": None,
                                  "partitions": None, "sensitivity": "sensitivity", "accuracy_vs_time": None,
                                  "privacy_reconstructions": None, "privacy_frontier": None,
                                  "strength": STRENGTH}
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("pdf", "png")


# ----------------------------------------------------------------------------------------------------------
# small helpers


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.1}`` -> ``{"train": {"lr": 0.1}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def yaml_scalar(value: Any) -> str:
    """A string that ``yaml.safe_load`` (the CLI's ``--set`` parser) reads back as exactly ``value``."""
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        if "e" in text:  # YAML 1.1 floats need a dot in the mantissa and a signed exponent: 1e-05 -> 1.0e-05
            mant, exp = text.split("e")
            text = f"{mant if '.' in mant else mant + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"
    elif value is None or isinstance(value, (bool, int)):
        text = json.dumps(value)
    else:
        text = str(value)
    if yaml.safe_load(text) != value or text.strip() != text or text == "":
        text = json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    return text


def set_args(overrides: Mapping[str, Any]) -> str:
    """Shell-quoted ``--set key=value`` arguments, in key order."""
    return " ".join(f"--set {shlex.quote(f'{k}={yaml_scalar(v)}')}" for k, v in sorted(overrides.items()))


def split_label(split: Iterable[int]) -> str:
    head, tail = split
    return f"h{head}t{tail}"


def _fmt(value: Any) -> str:
    return split_label(value) if isinstance(value, (list, tuple)) else f"{value:g}" if isinstance(value, float) else str(value)


def checkpoint_label(backbone: str, fraction: float) -> str:
    """Stem of a pre-training checkpoint's weights and card in ``backbones/``: ``B`` at the end of pre-training
    (fraction 1.0), else ``B@PCT`` with PCT the integer percent of the epoch budget (``tiny@10`` for 0.1), as the
    pretrain rule names them."""
    return backbone if round(100 * fraction) >= 100 else f"{backbone}@{round(100 * fraction)}"


def _err(where: str, exc: ConfigError) -> ConfigError:
    return ConfigError(f"workflow config {where}: {exc}")


# ----------------------------------------------------------------------------------------------------------
# schema validation with defaults


def _validator(schema: dict):
    """A Draft 2020-12 validator that also fills in ``default`` values of absent properties."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, props, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": properties})
    return cls(schema)


def _schema_error(error: Any) -> ConfigError:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        key = f"{path}.{extra[0]}" if path else str(extra[0]) if extra else path
        return ConfigError(f"unknown workflow config key {key!r}; valid keys{' in ' + path if path else ''}: "
                           f"{', '.join(known)}")
    if error.validator == "required":
        return ConfigError(f"workflow config {path or 'top level'}: {error.message}")
    if error.validator == "oneOf" and error.context:
        sub = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
        sub_path = ".".join(str(p) for p in sub.absolute_path) or path
        return ConfigError(f"workflow config key {sub_path!r}: {sub.message}")
    return ConfigError(f"workflow config key {path or 'top level'!r}: {error.message}")


def validate_schema(raw: Mapping[str, Any], schema_path: str | Path | None = None) -> dict[str, Any]:
    """Validate ``raw`` against the schema; return a copy with defaults filled in.

    Raises:
        ConfigError: one line naming the first offending key.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path or SCHEMA_PATH).read_text())
    doc = json.loads(json.dumps(dict(raw)))  # plain, deep copy
    errors = list(_validator(schema).iter_errors(doc))
    if errors:
        raise _schema_error(jsonschema.exceptions.best_match(errors))
    return doc


# ----------------------------------------------------------------------------------------------------------
# the grid


@dataclass(frozen=True)
class Role:
    """Why a run is in the grid: ``method`` (name), ``ablation`` (name), ``sensitivity`` (param, value) or
    ``strength`` (checkpoint label ``B@PCT`` or ``B``, fraction of the pre-training budget)."""

    kind: str
    name: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "value": self.value}


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    backbone: str
    dataset: str
    partition: str
    variant: str
    seed: int
    method: str
    settings: tuple[tuple[str, Any], ...]
    """The run's RunConfig as ``(dotted key, value)`` pairs that differ from RunConfig's defaults."""
    roles: tuple[Role, ...]
    lr_from: str | None = None
    """The tuning record (relative to ``results``) whose chosen learning rate the run trains with, or None."""

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.backbone, self.dataset, self.partition, self.variant, self.seed)

    @property
    def dir(self) -> str:
        """Run folder, relative to the results root."""
        return f"runs/{self.backbone}/{self.dataset}/{self.partition}/{self.variant}/seed{self.seed}"

    @property
    def partition_file(self) -> str:
        return f"partitions/{self.dataset}/{self.partition}/seed{self.seed}.json"

    def config(self) -> RunConfig:
        return from_dict(unflatten(dict(self.settings)))


@dataclass(frozen=True)
class TunePoint:
    """One grid point of a learning-rate search: a run on the training data minus the validation split."""

    multiplier: float
    lr: float
    seed: int
    settings: tuple[tuple[str, Any], ...]
    dir: str
    """Run folder, relative to the results root."""


@dataclass(frozen=True)
class Tuning:
    """The learning-rate search of one (backbone, dataset, method) (:mod:`benchmark.tuning`)."""

    backbone: str
    dataset: str
    method: str
    search: str
    """What the search is named by (its record's file name): the method, or a pooled reference's name."""
    partition: str
    seeds: tuple[int, ...]
    validation_fraction: float
    base_lr: float
    near_tie: float
    points: tuple[TunePoint, ...]

    @property
    def file(self) -> str:
        return tuning_file(self.backbone, self.dataset, self.search)


def tuning_file(backbone: str, dataset: str, method: str) -> str:
    """The tuning record of a (backbone, dataset, method), relative to the results root."""
    return f"tuning/{backbone}/{dataset}/{method}.json"


@dataclass(frozen=True)
class Accounting:
    """One analytic accounting table (all methods) for a backbone at a split point."""

    label: str
    """A backbone label (CPU-sized, trained) or a timm name (paper-scale, default resolution)."""
    split: tuple[int, int]
    trained: bool
    settings: tuple[tuple[str, Any], ...]
    samples_per_client: int
    num_classes: int
    method_params: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    """The dataset whose data size ``samples_per_client`` is (per-dataset accounting), or None."""
    """``("method.key", value)`` pairs: each method's own hyper-parameters from ``method_settings``."""

    @property
    def file(self) -> str:
        return f"accounting/{self.label}_{split_label(self.split)}.csv"


class Workflow:
    """A validated workflow config and its expanded grid. Build with :func:`load_workflow`."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.results: str = doc["results"]
        self.seeds: list[int] = list(doc["seeds"])
        self.base: dict[str, Any] = doc["run"]
        self.backbones: dict[str, dict[str, Any]] = doc["backbones"]
        ds = doc["datasets"]
        self.datasets: dict[str, dict[str, Any]] = {d: {} for d in ds} if isinstance(ds, list) else {
            d: dict(v or {}) for d, v in ds.items()}
        self.partitions: dict[str, dict[str, Any]] = doc["partitions"]
        self.method_sources: dict[str, str] = {}
        """Registry name -> ``module:Class`` / ``file.py:Class`` reference of each method from outside the
        package (what its runs' ``train.method`` holds, so the train process can import it)."""
        self.methods: list[str] = [self._method_name(f"methods.{i}", m) for i, m in enumerate(doc["methods"])]
        self.references: dict[str, dict[str, Any]] = {
            name: {**ref, "method": self._method_name(f"references.pooled.{name}.method", ref["method"])}
            for name, ref in doc["references"].get("pooled", {}).items()}
        self.backbone_cache: str = str(Path(doc["backbone_cache"]).expanduser()) if doc.get("backbone_cache") \
            else str(default_cache_dir())
        """The pretrain rule's ``--cache-dir`` (config key ``backbone_cache``; default: the environment's)."""
        self.tuning_section: dict[str, Any] | None = doc.get("tuning")
        self.privacy: dict[str, Any] = doc["privacy"]
        self._check_sections()
        self._check_strength()
        self._check_tuning()
        self.runs: dict[tuple, Run] = {r.key: r for r in self._expand()}
        self.tuning: dict[tuple[str, str, str], Tuning] = {
            (t.backbone, t.dataset, t.search): t for t in self._tuning()}
        self.accounting: dict[tuple[str, str], Accounting] = {
            (a.label, split_label(a.split)): a for a in self._accounting()}
        from benchmark.system.plan import system_section

        self.system: dict[str, Any] = system_section(doc)
        self.privacy_cases: dict[str, list[dict[str, Any]]] = self._privacy_cases()

    # ------------------------------------------------------------------ checks
    def _check_datasets(self) -> None:
        """Every dataset is a preset or a valid declaration (``source`` and friends); reads no data."""
        from benchmark.data.datasets import spec_from_config

        for name, entry in self.datasets.items():
            data = {**self.base.get("data", {}), **entry, "dataset": name}
            try:
                spec_from_config(from_dict({"data": data}).data)
            except ConfigError as exc:
                raise ConfigError(f"workflow config key 'datasets.{name}': {exc}") from None

    def _method_name(self, where: str, spec: str) -> str:
        """The registry name of a profile's method entry (a name, a reference or an entry point), checked
        through the registry; a reference is remembered in :attr:`method_sources`."""
        from benchmark.methods import method_name  # imports torch and every method: deferred to this first use

        try:
            name = method_name(spec)
        except ConfigError as exc:
            raise ConfigError(f"workflow config key '{where}': {exc}") from None
        if self.method_sources.get(name, spec) != spec and name != spec:
            raise ConfigError(f"workflow config key '{where}': {spec!r} and {self.method_sources[name]!r} are "
                              f"both named {name!r}")
        if name != spec:
            self.method_sources[name] = spec
        return name

    def source(self, method: str) -> str:
        """What a run of ``method`` (a registry name) sets as ``train.method``: its reference, if it has one."""
        return self.method_sources.get(method, method)

    def _check_sections(self) -> None:
        self._check_datasets()
        for method in self.doc["method_settings"]:
            if self._method_name(f"method_settings.{method}", method) != method:
                raise ConfigError(f"workflow config key 'method_settings.{method}': name the method by its "
                                  f"registry name ({self._method_name('method_settings', method)!r})")
        flat = flatten(self.base)
        for key in flat:
            if key in GRID_KEYS or key.startswith(METHOD_PARAMS):
                raise ConfigError(f"workflow config key 'run.{key}' is set by the grid (seeds, datasets, "
                                  f"partitions, backbones, methods, resources.*.threads; a method's own "
                                  f"method_params go in method_settings.<method>); remove it")
        for name, b in self.backbones.items():
            extra = [k for k in b["model"] if k not in ARCH_KEYS]
            if extra:
                raise ConfigError(f"workflow config key 'backbones.{name}.model.{extra[0]}': a backbone holds only "
                                  f"{', '.join(ARCH_KEYS)}; put split and prompt keys in run.model")
            if "backbone" not in b["model"]:
                raise ConfigError(f"workflow config key 'backbones.{name}.model.backbone' is required (a timm ViT name)")
        if POOLED in self.partitions:
            raise ConfigError(f"workflow config key 'partitions.{POOLED}': the label is reserved for the reference "
                              f"runs on the pooled data (references.pooled); rename the partition")
        for name in self.references:
            if name in self.methods or name in self.doc["ablations"].get("variants", {}):
                raise ConfigError(f"workflow config key 'references.pooled.{name}': a reference may not be named "
                                  f"like a method or an ablation")
        for method, sets in self.doc["method_settings"].items():
            bad = [k for k in sets if k not in OPTIMISER_KEYS and not k.startswith(METHOD_PARAMS)]
            if bad:
                raise ConfigError(f"workflow config key 'method_settings.{method}.{bad[0]}': method_settings may set "
                                  f"{', '.join(OPTIMISER_KEYS)} and {METHOD_PARAMS}* only; other cost-relevant keys "
                                  f"belong in run")
        for name, sets in self.doc["ablations"].get("variants", {}).items():
            self._check_variant(f"ablations.variants.{name}", sets)
            if name in self.methods:
                raise ConfigError(f"workflow config key 'ablations.variants.{name}': a variant may not be named "
                                  f"like a method")
        for block in ("ablations", "sensitivity", STRENGTH):
            scope = self.doc[block].get("scope", {})
            for axis, known in (("backbones", self.backbones), ("datasets", self.datasets),
                                ("partitions", self.partitions), ("seeds", self.seeds)):
                for item in scope.get(axis, []):
                    if item not in known:
                        raise ConfigError(f"workflow config key '{block}.scope.{axis}': {item!r} is not one of "
                                          f"{', '.join(map(str, known))}")
        if ABLATED_METHOD not in self.methods and (self.doc["ablations"].get("variants") or any(
                self.doc["sensitivity"].get(k) for k in SENSITIVITY_KEYS)):
            raise ConfigError("workflow config: ablations and sensitivity are SFPrompt variants; add sfprompt to "
                              "methods (their tables compare against it)")
        self.checkpoint_pcts()  # one set of checkpoint outputs for the pretrain rule

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

    @staticmethod
    def _check_variant(where: str, sets: Mapping[str, Any]) -> None:
        for key in sets:
            if key.startswith(VARIANT_FORBIDDEN) or key in VARIANT_FORBIDDEN:
                raise ConfigError(f"workflow config key '{where}.{key}': variants share their cell's data, "
                                  f"partition and backbone, so they may not set it")

    # ------------------------------------------------------------------ configs
    def _cache_dir(self) -> dict[str, Any]:
        return {} if "cache_dir" in self.base.get("data", {}) else {"data.cache_dir": f"{self.results}/cache"}

    def _backbone_settings(self, label: str) -> dict[str, Any]:
        b = self.backbones[label]
        out = {f"model.{k}": v for k, v in b["model"].items()}
        weights = b["weights"]
        out["model.weights"] = f"file:{self.results}/backbones/{label}.safetensors" if weights == "pretrain" else weights
        return out

    def _resolve(self, where: str, *layers: Mapping[str, Any], keep: tuple[str, ...] = ("",)) -> dict[str, Any]:
        """Flat RunConfig (defaults < base run < layers), validated; only the keys that differ from defaults
        and start with one of ``keep`` (a job's params hold only what its output depends on)."""
        flat = flatten(self.base)
        flat.update(self._cache_dir())
        for layer in layers:
            flat.update(layer)
        try:
            cfg = from_dict(unflatten(flat))
            if cfg.method_params:  # a method's own keys: checked against its Params (imports the methods)
                from benchmark.methods import method_class

                method_class(cfg.train.method).params(cfg)
        except ConfigError as exc:
            raise _err(where, exc) from None
        resolved, defaults = flatten(cfg.to_dict()), flatten(RunConfig().to_dict())
        return {k: v for k, v in resolved.items() if k.startswith(keep) and (
            defaults.get(k) != v or k in ("data.dataset", "train.method"))}

    def _cell_settings(self, backbone: str, dataset: str, partition: str, seed: int) -> dict[str, Any]:
        return {**self._backbone_settings(backbone), "data.dataset": dataset,
                **{f"data.{k}": v for k, v in self.datasets[dataset].items()},
                **{f"partition.{k}": v for k, v in self._partition_spec(partition).items()}, "seed": seed}

    def _partition_spec(self, partition: str) -> dict[str, Any]:
        return POOLED_PARTITION if partition == POOLED and self.references else self.partitions[partition]

    def _in_scope(self, block: str, backbone: str, dataset: str, partition: str, seed: int) -> bool:
        scope = self.doc[block].get("scope", {})
        return all(v in scope.get(axis, [v]) for axis, v in
                   (("backbones", backbone), ("datasets", dataset), ("partitions", partition), ("seeds", seed)))

    def _candidates(self, cell: tuple) -> Iterator[tuple[str, str, dict[str, Any], Role]]:
        """(variant, method, overrides, role) of one cell, methods first."""
        for m in self.methods:
            yield m, m, dict(self.doc["method_settings"].get(m, {})), Role("method", m)
        sf = dict(self.doc["method_settings"].get(ABLATED_METHOD, {}))
        if self._in_scope("ablations", *cell):
            for name, sets in self.doc["ablations"].get("variants", {}).items():
                yield name, ABLATED_METHOD, {**sf, **sets}, Role("ablation", name)
        if self._in_scope("sensitivity", *cell):
            for param, keys in SENSITIVITY_KEYS.items():
                for value in self.doc["sensitivity"].get(param, []):
                    values = value if param == "split" else [value]
                    sets = dict(zip(keys, values))
                    label = f"split_{split_label(value)}" if param == "split" else f"{param}{_fmt(value)}"
                    yield f"{ABLATED_METHOD}-{label}", ABLATED_METHOD, {**sf, **sets}, Role(
                        "sensitivity", param, split_label(value) if param == "split" else value)
        yield from self._strength_candidates(cell)
        yield from self._noise_candidates(cell)

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

    def _strength_candidates(self, cell: tuple) -> Iterator[tuple[str, str, dict[str, Any], Role]]:
        """Each strength method at each checkpoint of the cell's backbone; at 1.0 its settings are the method
        run's, so the expansion reuses that run (one more role, no job)."""
        backbone = cell[0]
        if backbone not in self.strength_backbones() or not self._in_scope(STRENGTH, *cell):
            return
        for method in self.doc[STRENGTH].get("methods", self.methods):
            sets = dict(self.doc["method_settings"].get(method, {}))
            for fraction in self.strength_fractions():
                label = checkpoint_label(backbone, fraction)
                if label == backbone:
                    yield method, method, sets, Role(STRENGTH, label, fraction)
                else:
                    weights = f"file:{self.path(f'backbones/{label}.safetensors')}"
                    yield (f"{method}@{label.rsplit('@', 1)[1]}", method, {**sets, "model.weights": weights},
                           Role(STRENGTH, label, fraction))

    def _noise_candidates(self, cell: tuple) -> Iterator[tuple[str, str, dict[str, Any], Role]]:
        """The noise defence's training runs: in the privacy cell's backbone, dataset and partition, on every seed
        (so the accuracy cost has a CI, paired with the method runs), each privacy method at each σ > 0 with its
        own settings (the run's default split; ``noise_training`` may list the methods): variant
        ``{method}-noise{σ}``, role ``noise`` (method, σ)."""
        trained = self.privacy["noise_training"]
        if not trained or cell[:3] != self.privacy_cell()[:3]:
            return
        methods = self.privacy["methods"] if trained is True else trained
        stray = [m for m in methods if m not in self.privacy["methods"]]
        if stray:
            raise ConfigError(f"workflow config key 'privacy.noise_training': {stray[0]!r} is not one of the privacy "
                              f"methods {self.privacy['methods']}")
        for sigma in sorted({float(s) for s in self.privacy["noise_sigma"] if s > 0}):
            for m in methods:
                if m in self.methods:  # else _privacy_cases names the bad key
                    yield (f"{m}-noise{_fmt(sigma)}", m, {**self.doc["method_settings"].get(m, {}), NOISE_KEY: sigma},
                           Role("noise", m, sigma))

    def _expand(self) -> list[Run]:
        runs: list[Run] = []
        for backbone in self.backbones:
            depth = self.backbones[backbone]["model"].get("depth")
            for dataset in self.datasets:
                for partition in self.partitions:
                    for seed in self.seeds:
                        cell = (backbone, dataset, partition, seed)
                        base = self._cell_settings(*cell)
                        by_config: dict[tuple, list] = {}
                        for variant, method, sets, role in self._candidates(cell):
                            where = f"run {backbone}/{dataset}/{partition}/{variant}/seed{seed}"
                            settings = self._resolve(where, base, {"train.method": self.source(method)}, sets)
                            self._check_depth(where, settings, depth)
                            ident = tuple(sorted(settings.items()))
                            if ident in by_config:
                                by_config[ident][2].append(role)
                            else:
                                by_config[ident] = [variant, method, [role], settings]
                        for ident, (variant, method, roles, settings) in by_config.items():
                            runs.append(Run(backbone, dataset, partition, variant, seed, method, ident, tuple(roles),
                                            self._lr_from(backbone, dataset, method)))
                for seed in self.seeds:
                    runs += self._reference_runs(backbone, dataset, seed, depth)
        return runs

    def _reference_runs(self, backbone: str, dataset: str, seed: int, depth: int | None) -> list[Run]:
        """The pooled-data references of one (backbone, dataset, seed): each method's own settings apply."""
        if not self.references:
            return []
        base = self._cell_settings(backbone, dataset, POOLED, seed)
        out = []
        for name, ref in self.references.items():
            method = ref["method"]
            where = f"run {backbone}/{dataset}/{POOLED}/{name}/seed{seed}"
            settings = self._resolve(where, base, {"train.method": self.source(method)},
                                     self.doc["method_settings"].get(method, {}))
            self._check_depth(where, settings, depth)
            lr_from = None if self.tuning_section is None else tuning_file(backbone, dataset, name)
            out.append(Run(backbone, dataset, POOLED, name, seed, method, tuple(sorted(settings.items())),
                           (Role("reference", name, ref.get("label", name)),), lr_from))
        return out

    # ------------------------------------------------------------------ learning-rate tuning (benchmark.tuning)
    def _check_tuning(self) -> None:
        t = self.tuning_section
        if t is None:
            return
        t.setdefault("partition", next(iter(self.partitions)))
        if t["partition"] not in self.partitions:
            raise ConfigError(f"workflow config key 'tuning.partition': {t['partition']!r} is not one of "
                              f"{', '.join(self.partitions)}")
        t["seeds"] = [int(x) for x in t.get("seeds") or [t.get("seed", 0)]]
        t.pop("seed", None)
        clash = sorted(set(t["seeds"]) & set(self.seeds))
        if clash:
            raise ConfigError(f"workflow config key 'tuning.seeds': {clash} are final seeds too (seeds: {self.seeds}); "
                              f"a learning rate tuned on a seed is then judged on that seed: pick others")
        for name, sets in self.doc["ablations"].get("variants", {}).items():
            if "train.lr" in sets:
                raise ConfigError(f"workflow config key 'ablations.variants.{name}.train.lr': with a tuning section "
                                  f"every run takes its method's tuned learning rate; remove it")

    def tuned_methods(self) -> list[str]:
        """The methods tuned per (backbone, dataset) on the federated clients: every method less those that take
        another's choice (``tuning.share``). Each pooled reference searches its own rate (:meth:`_tuning`)."""
        return [m for m in self.methods if m not in self._shared()]

    def _shared(self) -> dict[str, str]:
        """``tuning.share``: method -> the method whose choice it takes, checked against the tuned methods."""
        share = (self.tuning_section or {}).get("share", {})
        every = set(self.methods)
        for method, source in share.items():
            if method not in every or source not in every or source in share:
                bad, what = (method, "a tuned method") if method not in every else (
                    source, "a tuned method that is not itself shared")
                raise ConfigError(f"workflow config key 'tuning.share.{method}': {bad!r} is not {what} "
                                  f"({', '.join(sorted(every))})")
        return dict(share)

    def _lr_from(self, backbone: str, dataset: str, method: str) -> str | None:
        if self.tuning_section is None:
            return None
        return tuning_file(backbone, dataset, self._shared().get(method, method))

    def _tuning(self) -> list[Tuning]:
        """One learning-rate search per (backbone, dataset, tuned method): the method's main-grid settings in
        the tuning cell (``tuning.partition``, each of ``tuning.seeds``) on the training data minus the validation
        split, at each grid multiplier of the method's base ``train.lr``; and one per pooled reference."""
        from benchmark.tuning import grid_lr

        t = self.tuning_section
        if t is None:
            return []
        out = []
        frac, partition, seeds = t["validation_fraction"], t["partition"], tuple(t["seeds"])
        searches = [(m, m, partition) for m in self.tuned_methods()]
        # a pooled reference trains one client on all the data: 10x the optimiser steps per round of a federated
        # client, so it searches its own rate in that regime instead of taking its base method's federated one
        searches += [(ref["method"], name, POOLED) for name, ref in self.references.items()]
        for backbone in self.backbones:
            depth = self.backbones[backbone]["model"].get("depth")
            for dataset in self.datasets:
                for method, search, cell_partition in searches:
                    where = f"tuning {backbone}/{dataset}/{search}"
                    points, base = [], None
                    for seed in seeds:
                        layers = (self._cell_settings(backbone, dataset, cell_partition, seed),
                                  {"train.method": self.source(method)}, self.doc["method_settings"].get(method, {}),
                                  {"data.validation_fraction": frac})
                        base = from_dict(unflatten(self._resolve(where, *layers))).train.lr
                        for mult in t["grid"]:
                            lr = grid_lr(base, mult)
                            settings = self._resolve(where, *layers, {"train.lr": lr})
                            self._check_depth(where, settings, depth)
                            points.append(TunePoint(mult, lr, seed, tuple(sorted(settings.items())),
                                                    f"tuning/{backbone}/{dataset}/{search}/x{_fmt(mult)}/seed{seed}"))
                    out.append(Tuning(backbone, dataset, method, search, cell_partition, seeds, frac, base,
                                      float(t["near_tie"]), tuple(points)))
        return out

    def tuning_entry(self, wc: Any) -> Tuning:
        key = (wc.backbone, wc.dataset, wc.method)
        if key not in self.tuning:
            raise ConfigError(f"no learning-rate tuning for {'/'.join(key)} in this workflow config")
        return self.tuning[key]

    def tune_input(self, wc: Any) -> dict[str, str]:
        """What a search's grid points read: the decoded dataset and the pre-trained weights (every point of a
        search shares them; only ``train.lr`` differs)."""
        settings = dict(self.tuning_entry(wc).points[0].settings)
        out = {"cache": self.cache_file(from_dict(unflatten(settings)))}
        if self.backbones[wc.backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{wc.backbone}.safetensors")
        return out

    def tune_spec(self, wc: Any) -> str:
        """The ``tune`` verb's ``--spec`` (JSON): the search's cell and, per grid point, its run folder and
        settings (a Snakemake param: editing any point's settings reruns the search, which reuses the points
        whose config hash is unchanged)."""
        t = self.tuning_entry(wc)
        spec = {"backbone": t.backbone, "dataset": t.dataset, "method": t.method, "search": t.search,
                "partition": t.partition,
                "seeds": list(t.seeds), "validation_fraction": t.validation_fraction, "base_lr": t.base_lr,
                "near_tie": t.near_tie,
                "points": [{"multiplier": p.multiplier, "lr": p.lr, "seed": p.seed, "run_dir": self.path(p.dir),
                            "run_label": p.dir, "settings": dict(p.settings)} for p in t.points]}
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    def tuning_targets(self) -> list[str]:
        return [self.path(t.file) for t in self.tuning.values()]

    def lr_arg(self, wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake's argument name)
        """``--lr-from <tuning record>`` for runs whose learning rate is tuned (an input file, so a new choice
        reruns the run), plus ``--lr-method <method>`` when the run takes another method's choice
        (``tuning.share``), so the train verb still checks the record against the method it expects; empty
        without a ``tuning`` section."""
        if "tuning" not in input.keys():
            return ""
        arg = f"--lr-from {shlex.quote(str(input.tuning))}"
        run = self.run(wildcards)
        source = None if run.partition == POOLED else self._shared().get(run.method)  # a reference has its own
        return f"{arg} --lr-method {source}" if source else arg

    @staticmethod
    def _check_depth(where: str, settings: Mapping[str, Any], depth: int | None) -> None:
        head, tail = settings.get("model.head_blocks", 1), settings.get("model.tail_blocks", 1)
        if depth is not None and head + tail >= depth:
            raise ConfigError(f"workflow config {where}: model.head_blocks + model.tail_blocks = {head + tail} must "
                              f"be below the backbone depth {depth}")

    def _accounting(self) -> list[Accounting]:
        acc = self.doc["accounting"]
        labels = acc.get("backbones", list(self.backbones))
        spc = acc["samples_per_client"]
        if spc == "auto":
            spc = self.run_samples_per_client()
        if isinstance(spc, dict):
            unknown = [d for d in spc if d not in self.datasets]
            if unknown:
                raise ConfigError(f"workflow config key 'accounting.samples_per_client.{unknown[0]}': not one of the "
                                  f"datasets ({', '.join(self.datasets)})")
            sizes = [(f".{d}", n, d) for d, n in spc.items()]
        else:
            sizes = [("", spc, None)]
        out = []
        for label in labels:
            trained = label in self.backbones
            arch = ({k: v for k, v in self._backbone_settings(label).items() if k != "model.weights"} if trained
                    else {"model.backbone": label, **{f"model.{k}": None for k in ARCH_KEYS[1:]}})
            for split in acc["splits"]:
                sets = {**arch, "model.weights": "scratch", "model.head_blocks": split[0],
                        "model.tail_blocks": split[1]}
                settings = self._resolve(f"accounting {label} {split_label(split)}", sets, keep=("model.", "train."))
                for suffix, n, dataset in sizes:
                    out.append(Accounting(label + suffix, tuple(split), trained, tuple(sorted(settings.items())), n,
                                          acc["num_classes"], self._method_params(), dataset))
        return out

    def _method_params(self) -> tuple[tuple[str, Any], ...]:
        """Each method's ``method_params`` from ``method_settings`` as ``("method.key", value)`` pairs."""
        return tuple(sorted((f"{m}.{k[len(METHOD_PARAMS):]}", v) for m, sets in self.doc["method_settings"].items()
                            for k, v in sets.items() if k.startswith(METHOD_PARAMS)))

    def run_samples_per_client(self) -> int:
        """Samples per client of the runs: the first dataset's train size over the first partition's clients."""
        dataset, partition = next(iter(self.datasets)), next(iter(self.partitions))
        data = {**self.base.get("data", {}), **self.datasets[dataset]}
        clients = self.partitions[partition].get("num_clients", self.base.get("partition", {}).get("num_clients", 10))
        if data.get("max_train_samples") is None:
            raise ConfigError("workflow config key 'accounting.samples_per_client': auto needs "
                              f"data.max_train_samples for {dataset!r}; give an integer instead")
        return max(1, int(data["max_train_samples"]) // int(clients))

    # ------------------------------------------------------------------ privacy (benchmark.privacy)
    def privacy_cell(self) -> tuple[str, str, str, int]:
        """(backbone, dataset, partition, seed) the privacy jobs attack: ``privacy.*`` or the first of each."""
        p = self.privacy
        cell = (p.get("backbone") or next(iter(self.backbones)), p.get("dataset") or next(iter(self.datasets)),
                p.get("partition") or next(iter(self.partitions)), p.get("seed", self.seeds[0]))
        for key, value, known in zip(("backbone", "dataset", "partition", "seed"), cell,
                                     (self.backbones, self.datasets, self.partitions, self.seeds)):
            if value not in known:
                raise ConfigError(f"workflow config key 'privacy.{key}': {value!r} is not one of "
                                  f"{', '.join(map(str, known))}")
        return cell

    def _privacy_cases(self) -> dict[str, list[dict[str, Any]]]:
        """Per split label, one case per privacy method: its run in the privacy cell at that split (the method
        run, or an SFPrompt split sensitivity point) or, without one, the method run's settings at that split
        (attacked at round 0 only)."""
        backbone, dataset, partition, seed = cell = self.privacy_cell()
        stray = [m for m in self.privacy["defence"].get("methods") or [] if m not in self.privacy["methods"]]
        if stray:
            raise ConfigError(f"workflow config key 'privacy.defence.methods': {stray[0]!r} is not one of the privacy "
                              f"methods {self.privacy['methods']}")
        depth = self.backbones[backbone]["model"].get("depth")
        in_cell = [r for r in self.runs.values() if (r.backbone, r.dataset, r.partition, r.seed) == cell]
        out: dict[str, list[dict[str, Any]]] = {}
        for split in self.privacy["splits"]:
            label, cases = split_label(split), []
            for method in self.privacy["methods"]:
                if method not in self.methods:
                    raise ConfigError(f"workflow config key 'privacy.methods': {method!r} is not in methods "
                                      f"({', '.join(self.methods)})")
                base = next(r for r in in_cell if r.variant == method)
                match = [r for r in in_cell if r.method == method and any(
                    (role.kind, role.name) in (("method", method), ("sensitivity", "split")) for role in r.roles)
                    and _split_of(r) == tuple(split)]
                noise = {_fmt(float(role.value)): r.dir for r in in_cell if r.method == method
                         and _split_of(r) == tuple(split) for role in r.roles if role.kind == "noise"}
                if match:
                    run = match[0]
                    cases.append({"method": method, "settings": dict(run.settings), "run": run.dir,
                                  **({"noise_runs": noise} if noise else {})})
                    continue
                where = f"privacy {method} {label}"
                sets = self._resolve(where, dict(base.settings),
                                     {"model.head_blocks": split[0], "model.tail_blocks": split[1]})
                self._check_depth(where, sets, depth)
                cases.append({"method": method, "settings": sets, "run": None})
            out[label] = cases
        return out

    def privacy_accuracy_runs(self, split: str) -> list[dict[str, Any]]:
        """The runs behind the noise defence's accuracy cost at ``split`` (a label), on every seed of the privacy
        cell's backbone, dataset and partition: each privacy method's run (σ = 0) and its noise-trained runs
        (σ > 0), for the methods that have noise runs at this split. Empty without any."""
        backbone, dataset, partition, _ = self.privacy_cell()
        out = []
        for r in self.runs.values():
            if (r.backbone, r.dataset, r.partition) != (backbone, dataset, partition) or split_label(_split_of(r)) != split:
                continue
            for role in r.roles:
                if role.kind == "noise" or (role.kind == "method" and role.name in self.privacy["methods"]):
                    sigma = float(role.value) if role.kind == "noise" else 0.0
                    out.append({"method": r.method, "sigma": sigma, "seed": r.seed, "dir": r.dir})
        noisy = {e["method"] for e in out if e["sigma"] > 0}
        return sorted((e for e in out if e["method"] in noisy), key=lambda e: (e["method"], e["sigma"], e["seed"]))

    def privacy_stem(self, split: str) -> str:
        return f"privacy/{self.privacy_cell()[0]}_{split}"

    def privacy_targets(self) -> list[str]:
        return [self.path(f"{self.privacy_stem(s)}.{x}") for s in self.privacy_cases for x in ("csv", "npz")]

    def _privacy_split(self, wc: Any) -> list[dict[str, Any]]:
        if wc.backbone != self.privacy_cell()[0] or wc.split not in self.privacy_cases:
            raise ConfigError(f"no privacy job {wc.backbone}_{wc.split} in this workflow config")
        return self.privacy_cases[wc.split]

    def privacy_spec(self, wc: Any) -> str:
        """The privacy job's ``--spec`` (JSON): its cases and settings, so editing them reruns exactly it."""
        p = self.privacy
        acc = self.doc["accounting"].get("samples_per_client", "auto")
        cases = [{"method": c["method"], "settings": c["settings"],
                  "run_dir": self.path(c["run"]) if c["run"] else None,
                  **({"noise_runs": {s: self.path(d) for s, d in c["noise_runs"].items()}} if c.get("noise_runs") else {})}
                 for c in self._privacy_split(wc)]
        head, tail = (int(v) for v in re.fullmatch(r"h(\d+)t(\d+)", wc.split).groups())
        spec = {"backbone": wc.backbone, "split": [head, tail], "cases": cases,
                "run_labels": {self.path(r): r for c in self._privacy_split(wc) for r in _case_runs(c)},
                "attacks": p["attacks"], "noise_sigma": p["noise_sigma"], "rounds": p["rounds"],
                "images": p["images"], "aux_samples": p["aux_samples"],
                "samples_per_client": (acc if isinstance(acc, int) else acc[self.privacy_cell()[1]]
                                       if isinstance(acc, dict) and self.privacy_cell()[1] in acc
                                       else self.run_samples_per_client()),
                "attack_settings": {"opt_steps": p["optimisation"]["steps"], "opt_lr": p["optimisation"]["lr"],
                                    "opt_tv": p["optimisation"]["tv"], "decoder_epochs": p["decoder"]["epochs"],
                                    "decoder_hidden": p["decoder"]["hidden"], "decoder_lr": p["decoder"]["lr"],
                                    "seed": self.privacy_cell()[3]},
                "defence": p["defence"]}
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    def privacy_input(self, wc: Any) -> dict[str, Any]:
        cases = self._privacy_split(wc)
        backbone = self.privacy_cell()[0]
        out: dict[str, Any] = {"cache": self.cache_file(from_dict(unflatten(cases[0]["settings"])))}
        if self.backbones[backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{backbone}.safetensors")
        runs = sorted({r for c in cases for r in _case_runs(c)})
        if runs and "final" in self.privacy["rounds"]:
            out["heads"] = [self.path(f"{r}/head_state.safetensors") for r in runs]
        return out

    # ------------------------------------------------------------------ lookups used by the rules
    def run(self, wc: Any) -> Run:
        key = (wc.backbone, wc.dataset, wc.partition, wc.variant, int(wc.seed))
        if key not in self.runs:
            raise ConfigError(f"no run {'/'.join(map(str, key))} in this workflow config")
        return self.runs[key]

    def path(self, rel: str) -> str:
        return f"{self.results}/{rel}"

    def train_args(self, wildcards: Any) -> str:
        """The run's ``--set`` arguments (a Snakemake param: a change reruns the run)."""
        return set_args(dict(self.run(wildcards).settings))

    @staticmethod
    def weights_arg(wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake's argument name)
        """``--set model.weights=file:<input>`` for pre-trained backbones: the rule's input path, which is a
        local copy when Snakemake stages files from remote storage (Kubernetes). Derived from the input, so
        Snakemake tracks it through the input file, not as a parameter."""
        return set_args({"model.weights": f"file:{input.weights}"}) if "weights" in input.keys() else ""

    @staticmethod
    def cpus(wildcards: Any, threads: int) -> int:
        """The ``cpus`` resource of a job: its threads (locally capped at the host's cores, see common.smk)."""
        return threads

    @staticmethod
    def run_dir(wildcards: Any, output: Any) -> str:
        """The train rule's ``--out``: the folder of its ``metrics.csv`` output."""
        return str(Path(output.metrics).parent)

    @staticmethod
    def results_dir(wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake passes it by this name)
        """The report rules' ``--results``: the folder of their ``grid.json`` input."""
        return str(Path(input.grid).parent)

    def train_input(self, wc: Any) -> dict[str, str]:
        run = self.run(wc)
        out = {"partition": self.path(run.partition_file), "cache": self.cache_file(run.config())}
        if self.backbones[run.backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{self.checkpoint_of(run)}.safetensors")
        if run.lr_from:
            out["tuning"] = self.path(run.lr_from)
        return out

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

    def _partition_settings(self, wc: Any) -> dict[str, Any]:
        """The partition depends on labels only: any backbone's cell settings, weights from scratch."""
        backbone = next(iter(self.backbones))
        cell = self._cell_settings(backbone, wc.dataset, wc.partition, int(wc.seed))
        cell["model.weights"] = "scratch"
        keep = ("device", "seed", "data.", "partition.") + tuple(f"model.{k}" for k in ARCH_KEYS)
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
                "model.weights") + tuple(f"model.{k}" for k in ARCH_KEYS)
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
        size = cfg.data.cache_img_size or cfg.model.img_size
        if size is None:  # timm's default resolution of the backbone (imports timm: paper-scale profiles only)
            from benchmark.models.vit import input_spec

            size = input_spec(cfg.model)[0]
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

    def accounting_entry(self, wc: Any) -> Accounting:
        return self.accounting[(wc.backbone, wc.split)]

    def accounting_args(self, wc: Any) -> str:
        a = self.accounting_entry(wc)
        method_sets = " ".join(f"--method-set {shlex.quote(f'{k}={yaml_scalar(v)}')}" for k, v in a.method_params)
        methods = ""
        if self.method_sources:  # the accounting process must import them: name every method, references too
            from benchmark.methods import federated_methods

            names = federated_methods() + [m for m in self.methods if m in self.method_sources]
            methods = "--methods " + " ".join(shlex.quote(self.source(m)) for m in dict.fromkeys(names))
        return (f"{set_args(dict(a.settings))} --samples-per-client {a.samples_per_client} "
                f"--num-classes {a.num_classes} {method_sets} {methods}").rstrip()

    def resources(self, rule: str) -> dict[str, int]:
        res = self.doc["resources"]
        return {**DEFAULT_RESOURCES, **res.get("default", {}), **res.get(rule, {})}

    def pretrained(self) -> list[str]:
        return [b for b, spec in self.backbones.items() if spec["weights"] == "pretrain"]

    # ------------------------------------------------------------------ targets
    def run_targets(self) -> list[str]:
        return [self.path(f"{r.dir}/metrics.csv") for r in self.runs.values()]

    def partition_targets(self) -> list[str]:
        return sorted({self.path(r.partition_file) for r in self.runs.values()})

    def accounting_targets(self) -> list[str]:
        return [self.path(a.file) for a in self.accounting.values()]

    def system_targets(self) -> list[str]:
        """One usage CSV per accounting table (the ``system`` rule: paper-scale time and energy inputs)."""
        return [self.path(f"system/{a.label}_{split_label(a.split)}.csv") for a in self.accounting.values()]

    def table_targets(self) -> list[str]:
        return [self.path(f"tables/{t}.{fmt}") for t in self.tables() for fmt in TABLE_FORMATS]

    def figure_targets(self, formats: Iterable[str] = FIGURE_FORMATS) -> list[str]:
        return [self.path(f"figures/{f}.{x}") for f in self.figures() for x in formats]

    def _role_kinds(self) -> set[str]:
        """The run roles of the grid, plus ``tuning`` when learning rates are tuned (the tuning table)."""
        return {role.kind for r in self.runs.values() for role in r.roles} | ({"tuning"} if self.tuning else set())

    def tables(self) -> list[str]:
        """The tables this grid renders: those whose required run role occurs in it."""
        kinds = self._role_kinds()
        return [t for t, need in TABLES.items() if need is None or need in kinds]

    def figures(self) -> list[str]:
        kinds = self._role_kinds()
        return [f for f, need in FIGURES.items() if need is None or need in kinds]

    def report_outputs(self, kind: str) -> list[tuple[str, str | None]]:
        """(path, caption file relative to workflow/rules/ or None) of the ``tables`` or ``figures`` rule: the
        CSV of each table and the PNG of each figure go into ``snakemake --report`` with their caption."""
        if kind == "tables":
            return [(p, f"../report/table_{Path(p).stem}.rst" if p.endswith(".csv") else None)
                    for p in self.table_targets()]
        return [(p, f"../report/figure_{Path(p).stem}.rst" if p.endswith(".png") else None)
                for p in self.figure_targets()]

    def final_targets(self) -> list[str]:
        """What ``all`` asks for: the report and, explicitly, everything behind it. Snakemake does not recreate
        a missing intermediate file whose dependents are up to date, so the runs, partitions, backbones and
        accounting tables are targets too: deleting one run folder reruns that run, then the report."""
        return (self.table_targets() + self.figure_targets() + [self.path("manifest.json")] + self.run_targets()
                + self.partition_targets() + self.accounting_targets() + self.system_targets()
                + self.privacy_targets() + self.tuning_targets()
                + [self.path(f"backbones/{b}.safetensors") for b in self.pretrained()]
                + [f for b in self.pretrained() for f in self.checkpoint_files(b)])

    # ------------------------------------------------------------------ what the report reads
    def grid(self) -> dict[str, Any]:
        """Everything the report needs, paths relative to ``results`` (written to ``grid.json``)."""
        return {
            "format": 1,
            "config": self.doc,
            "runs": [{"backbone": r.backbone, "dataset": r.dataset, "partition": r.partition, "variant": r.variant,
                      "seed": r.seed, "method": r.method, "dir": r.dir, "partition_file": r.partition_file,
                      "roles": [role.to_dict() for role in r.roles], "settings": dict(r.settings),
                      "lr_from": r.lr_from}
                     for r in self.runs.values()],
            "accounting": [{"label": a.label, "split": split_label(a.split), "head_blocks": a.split[0],
                            "tail_blocks": a.split[1], "trained": a.trained, "file": a.file,
                            "samples_per_client": a.samples_per_client, "settings": dict(a.settings),
                            "method_params": dict(a.method_params), "dataset": a.dataset}
                           for a in self.accounting.values()],
            "backbones": {b: {"weights": spec["weights"],
                              "card": f"backbones/{b}.json" if spec["weights"] == "pretrain" else None,
                              "checkpoints": {str(p): f"backbones/{b}@{p}.json" for p in self.checkpoint_pcts()}
                              if spec["weights"] == "pretrain" else {}}
                          for b, spec in self.backbones.items()},
            "strength": self._strength_points(),
            "method_sources": dict(self.method_sources),
            "privacy": [{"backbone": self.privacy_cell()[0], "split": s, "file": f"{self.privacy_stem(s)}.csv",
                         "examples": f"{self.privacy_stem(s)}.npz", "runs": [r for c in cases for r in _case_runs(c)],
                         "accuracy_runs": self.privacy_accuracy_runs(s)}
                        for s, cases in self.privacy_cases.items()],
            "tuning": [{"backbone": t.backbone, "dataset": t.dataset, "method": t.method, "search": t.search,
                        "file": t.file,
                        "runs": [p.dir for p in t.points]} for t in self.tuning.values()],
            "tuning_share": self._shared() if self.tuning_section is not None else {},
            "tables": self.tables(),
            "figures": self.figures(),
            "report": self.doc["report"],
            "system": self.system,
        }

    def config_json(self) -> str:
        """The validated config as compact JSON (the ``grid`` rule's parameter)."""
        return json.dumps(self.doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Hash of the expanded grid: a change in the expansion logic alone also rewrites ``grid.json``."""
        return hashlib.sha256(json.dumps(self.grid(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def run_config_yaml(self, run: Run) -> str:
        """The run's full RunConfig as YAML (reproduce one run by hand: ``train --config FILE``)."""
        return run.config().to_yaml()

    def summary(self) -> str:
        roles: dict[str, int] = {}
        for r in self.runs.values():
            for role in r.roles:
                roles[role.kind] = roles.get(role.kind, 0) + 1
        return (f"{len(self.runs)} runs ({', '.join(f'{v} {k}' for k, v in roles.items())} roles), "
                f"{len(self.partition_targets())} partitions, {len(self.pretrained())} pre-trained backbones, "
                f"{len(self.accounting)} accounting tables"
                + (f", {sum(len(t.points) for t in self.tuning.values())} tuning runs ({len(self.tuning)} "
                   f"learning-rate searches)" if self.tuning else "") + f"; results under {self.results}/")


def _split_of(run: Run) -> tuple[int, int]:
    """(head_blocks, tail_blocks) of a run."""
    settings = dict(run.settings)  # the keys that differ from RunConfig's defaults
    return (settings.get("model.head_blocks", ModelConfig.head_blocks),
            settings.get("model.tail_blocks", ModelConfig.tail_blocks))


def _case_runs(case: Mapping[str, Any]) -> list[str]:
    """The run folders a privacy case attacks: its run (σ = 0) and its noise-trained runs (σ > 0)."""
    return ([case["run"]] if case.get("run") else []) + sorted(case.get("noise_runs", {}).values())


def prepare_jobs(basedir: str | Path, python: str) -> None:
    """Make ``python -m benchmark`` in every job mean ``basedir``'s package under the ``python`` interpreter
    that runs Snakemake (jobs inherit the environment; a ``conda:`` env, when used, prepends its own)."""
    import os

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(basedir), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")])


def load_workflow(raw: Mapping[str, Any], schema_path: str | Path | None = None) -> Workflow:
    """Validate a workflow config (a Snakemake ``config`` dict or a loaded YAML) and expand its grid.

    Raises:
        ConfigError: one line naming the offending key (schema, RunConfig keys and ranges, grid rules).
    """
    return Workflow(validate_schema(raw, schema_path))


def load_workflow_file(path: str | Path, overrides: Mapping[str, Any] | None = None,
                       schema_path: str | Path | None = None) -> Workflow:
    """Load a workflow config YAML file, apply top-level overrides (e.g. ``{"results": "/tmp/r"}``), validate."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"workflow config file {str(p)!r} does not exist")
    raw = yaml.safe_load(p.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"workflow config file {str(p)!r} must hold a mapping")
    raw.update(overrides or {})
    return load_workflow(raw, schema_path)


def find_run(wf: Workflow, spec: str) -> Run:
    """A run by ``backbone/dataset/partition/variant/seedN`` or its run folder."""
    parts = [p for p in spec.strip("/").split("/") if p not in ("runs",)]
    parts = parts[-5:]
    if len(parts) != 5 or not parts[4].startswith("seed"):
        raise ConfigError(f"run {spec!r}: expected BACKBONE/DATASET/PARTITION/VARIANT/seedN")
    key = (*parts[:4], int(parts[4][4:]))
    if key not in wf.runs:
        raise ConfigError(f"run {spec!r} is not in the grid ({len(wf.runs)} runs; see `python -m benchmark grid`)")
    return wf.runs[key]


__all__ = ["Workflow", "Run", "Role", "Accounting", "Tuning", "TunePoint", "load_workflow", "load_workflow_file", "find_run", "set_args",
           "prepare_jobs",
           "yaml_scalar", "flatten", "unflatten", "validate_schema"]
