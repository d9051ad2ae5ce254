"""The run configuration: frozen dataclasses loaded from YAML, with ``section.key=value`` CLI overrides.

Precedence is defaults < YAML file < CLI overrides. An unknown key is a one-line
:class:`~benchmark.errors.ConfigError` naming the key and listing the valid ones; values are type-checked
and range-checked here, before any data is read or any model built.

The ``key=value`` syntax of overrides (and its inverse, for the workflow) is :mod:`benchmark.overrides`.

Every knob that the SFPrompt paper (Cao et al., arXiv 2407.17533) leaves open is a field below, and its
default is marked "our choice" (see ``shared/PAPER.md`` for the reasoning).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from benchmark.errors import ConfigError
from benchmark.overrides import apply_overrides, parse_overrides

ARCH_KEYS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads")
"""The ``model`` keys that override the timm architecture's constructor (None: the architecture's default)."""


def cache_file_name(dataset: str, img_size: int) -> str:
    """File name of the decoded cache of ``(dataset, img_size)`` inside ``data.cache_dir`` (here, torch-free,
    so that the workflow can name the file as a rule output)."""
    return f"{dataset}-{int(img_size)}px.safetensors"


ALWAYS = object()
"""In :data:`HASH_EXEMPT`: the key is left out of the run hash whatever its value."""


@dataclass(frozen=True)
class HashExempt:
    """A key left out of :meth:`RunConfig.hash`: always, or while at ``neutral``, the value that reproduces the
    runs from before the key existed (so their hashes and resumable checkpoints stay valid)."""

    key: str
    """Dotted config key (``method_params.K`` is looked up among the method's parameters)."""
    neutral: Any
    """:data:`ALWAYS`, or the value at which the key is left out."""
    reason: str


HASH_EXEMPT = (
    HashExempt("threads", ALWAYS, "runtime: CPU runs are bit-identical across thread counts (tested)"),
    HashExempt("keep_freed_memory", ALWAYS, "runtime: allocation only, results bit-identical either way"),
    HashExempt("device", ALWAYS, "runtime: GPU runs repeat only up to float rounding anyway; env.json records it"),
    HashExempt("pretrain.checkpoints", ALWAYS, "chooses which points of the one pre-training trajectory are "
                                               "saved, never a number (and hashes stay those before the key)"),
    HashExempt("train.interim_eval_samples", None, "added later; None is the run from before it"),
    HashExempt("train.client_eval", True, "added later; True is the run from before it"),
    HashExempt("method_params.smashed_noise_sigma", 0.0, "added later; sigma = 0 (no noise) reproduces the runs "
                                                         "from before the noise defence bit for bit"),
)
"""Every rule that keeps a setting out of the run hash, with its reason (applied by :meth:`RunConfig.hash`).
The runtime keys change how fast a run goes, never its numbers on one device type; ``env.json`` records them."""


DECLARATION_KEYS = ("source", "hub_config", "train_split", "test_split", "image_column", "label_column",
                    "num_classes", "test_fraction")
"""``data`` keys that declare a dataset (fields of :class:`benchmark.data.datasets.DatasetSpec`); None: the
preset's value (or the spec's default, for a dataset declared by ``source``)."""


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives, and how much of it a CPU-sized run uses.

    A dataset is either a preset (``dataset: cifar10``, ``python -m benchmark data --list``) or declared here
    by ``source`` and, where auto-detection cannot decide, the keys after it; ``dataset`` is then the name
    used in paths, cache files and tables. See :mod:`benchmark.data.datasets`.
    """

    dataset: str = "digits"
    """A preset's name, or the name of the dataset declared by ``source`` (letters, digits, ``_ . -``)."""
    source: Optional[str] = None
    """Declares a dataset: ``hf:OWNER/NAME`` (hub id; a local mirror ``data_root/<dataset>/`` first),
    ``parquet:DIR`` (parquet files in the hub's layout, ``{split}-*.parquet``) or ``imagefolder:DIR`` (one
    subfolder per class). None: ``dataset`` is a preset."""
    hub_config: Optional[str] = None
    """Hub configuration (subset) name; also a sub-folder of a ``parquet:`` folder."""
    train_split: Optional[str] = None
    """Split trained on (default ``train``)."""
    test_split: Optional[str] = None
    """Split evaluated on. None: ``test`` if the source has one, else a seeded stratified draw of
    ``test_fraction`` of the train split (seed 0, independent of the run seed)."""
    image_column: Optional[str] = None
    """Column of images; None: the one ``Image`` column."""
    label_column: Optional[str] = None
    """Column of labels; None: the one ``ClassLabel`` column (else the one integer column)."""
    num_classes: Optional[int] = None
    """Number of classes; None: from the ``ClassLabel`` (or max integer label + 1, with a warning)."""
    test_fraction: Optional[float] = None
    """Share of the train split held out when there is no test split (default 0.2)."""
    data_root: Optional[str] = None
    """Folder of local parquet mirrors (``ROOT/<name>/{split}-*.parquet``); None: ``$BENCHMARK_DATA_ROOT``."""
    cache_dir: str = "results/cache"
    """Where decoded uint8 image arrays are cached, one file per (dataset, image size)."""
    cache_img_size: Optional[int] = None
    """Resolution of the decoded cache; None: the model's input size. For 224-px backbones on 32-px data
    set it to 32: the cache stays small (CIFAR-10 at 224 px would be 9 GB) and batches are upsampled on the
    device (bilinear, antialiased) as they are drawn."""
    max_train_samples: Optional[int] = None
    """Stratified, seeded subsample of the train split (None: all)."""
    max_test_samples: Optional[int] = None
    """Stratified, seeded subsample of the test split (None: all)."""
    validation_fraction: Optional[float] = None
    """Hold out this share of the (subsampled) train split as a validation set, stratified and drawn with the
    run seed (its own ``"validation"`` stream); the run partitions the rest among clients and evaluates on the
    validation set instead of the test split, which it never reads (metrics rows say ``validation``). None:
    no validation set, evaluate on the test split. Used by hyper-parameter tuning (:mod:`benchmark.tuning`)."""

    def cache_size(self, input_size: int | Callable[[], int]) -> int:
        """Side (pixels) of the decoded cache a model with ``input_size``-px inputs reads: ``cache_img_size``,
        else the input size. The one place this is decided (runs, pre-training, attacks, the cache verb, the
        backbone cache's key, the workflow's cache files).

        Args:
            input_size: The model's input size, or a function returning it, called only when ``cache_img_size``
                is unset (timm's default resolution costs an import of timm that a set size spares).
        """
        if self.cache_img_size:
            return int(self.cache_img_size)
        return int(input_size() if callable(input_size) else input_size)

    def preset(self, name: str) -> "DataConfig":
        """A copy reading the preset ``name`` (declaration keys cleared), e.g. a pre-training dataset."""
        return dataclasses.replace(self, dataset=name, **{k: None for k in DECLARATION_KEYS})


@dataclass(frozen=True)
class PartitionConfig:
    """How the train split is divided among clients (flwr-datasets partitioners)."""

    scheme: str = "iid"
    """``iid``, ``dirichlet`` or ``pathological``."""
    num_clients: int = 10
    alpha: float = 0.5
    """Dirichlet concentration (smaller: more skew). Used by ``dirichlet``."""
    classes_per_client: int = 2
    """Classes per client. Used by ``pathological``."""
    min_partition_size: int = 2
    """Dirichlet resamples until every client has at least this many samples."""


@dataclass(frozen=True)
class ModelConfig:
    """The timm backbone, its weights, and the head/body/tail split with prompts."""

    backbone: str = "vit_tiny_patch16_224"
    """timm architecture name (``timm.list_models('vit_*')``)."""
    weights: str = "scratch"
    """``scratch``, ``timm:<pretrained tag>`` (hub weights) or ``file:<path.safetensors>``."""
    img_size: Optional[int] = None
    """Input resolution; None keeps the architecture's default."""
    patch_size: Optional[int] = None
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    head_blocks: int = 1
    """Transformer blocks on the client before the cut (our choice: 1)."""
    tail_blocks: int = 1
    """Transformer blocks on the client after the body (our choice: 1)."""
    prompt_len: int = 10
    """Soft prompt tokens (VPT); 0 disables prompts (our choice: 10)."""
    prompt_depth: str = "shallow"
    """``shallow`` (tokens inserted once, before the first block) or ``client`` (fresh tokens before every
    client-side block, VPT-deep restricted to the blocks the client holds). Our choice: shallow."""


@dataclass(frozen=True)
class TrainConfig:
    """The federated method and its optimisation settings."""

    method: str = "sfprompt"
    """Registered method name (sfprompt, fedavg, fedprompt, sfl_v1, sfl_v2, linear_probe), or a method from outside
    the package: ``module.path:Class``, ``path/to/file.py:Class`` or an entry point's name (docs/extending.md).
    Its own hyper-parameters are in the top-level ``method_params`` section."""
    rounds: int = 10
    participation: float = 1.0
    """Fraction of clients sampled each round, in (0, 1]."""
    local_epochs: int = 1
    """Local epochs per round of the methods with one local phase (FedAvg, FedPrompt, SplitFed, the references);
    SFPrompt's phases have their own epochs in ``method_params``."""
    batch_size: int = 32
    optimizer: str = "sgd"
    """``sgd`` (with ``momentum``; FedAvg's classic choice, ours) or ``adamw``. A fresh optimiser is made for
    each client and round, so AdamW's moment estimates restart every round."""
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: Optional[float] = None
    """Clip the global gradient norm of each step to this value (None: no clipping)."""
    weighting: str = "samples"
    """FedAvg weights: ``samples`` (local samples used, our choice) or ``uniform``."""
    eval_every: int = 1
    """Evaluate the global model every this many rounds (the last round is always evaluated)."""
    eval_batch_size: int = 256
    interim_eval_samples: Optional[int] = None
    """Test images for the evaluations before the final round: a fixed stratified subsample (seed 0, the same
    images for every run, method and seed, so interim curves stay paired) of this many images; None = the whole
    split. The final round is always evaluated on the whole split, so tables of final accuracy never use it; the
    interim points of curves and of time to target carry a binomial standard error of about
    sqrt(p(1-p)/n) (1.1 points at n = 2,000, p = 0.5). Our knob, for cost: a 10,000-image evaluation of the
    default ViT took 10 s of a 35-s one-core run (cProfile, batch 1,000). Left out of the run hash while None."""
    client_eval: bool = True
    """After the final round, also score the global model on each client's own training data (the
    ``client_train`` rows of ``metrics.csv``: how well the global model fits each client's skewed share). No
    table or figure reads them; off, a run skips one pass over its training set (~0.6 s of a 22-s default run).
    Never changes a test or validation number. Left out of the run hash while True (the behaviour before it)."""


@dataclass(frozen=True)
class PretrainConfig:
    """Supervised pre-training of the backbone on a source dataset (CPU profiles: no hub weights)."""

    dataset: str = "cifar100"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    max_train_samples: Optional[int] = None
    max_test_samples: Optional[int] = None
    augment: bool = True
    """Random horizontal flips and 4-px-padded random crops (our choice for 32-px natural images). Turn it
    off for tiny or digit images: at 16 px a 4-px crop removes a quarter of the image and flips change
    digits (measured: mnist5k at 16 px reaches 10% after 3 epochs with it, 89% without)."""
    checkpoints: list[float] = field(default_factory=list)
    """Fractions of the epoch budget, in (0, 1], at which the weights along the one training trajectory are
    saved and evaluated on the test split (``max_test_samples``), e.g. ``[0.1, 0.3, 1.0]``. A fraction ``f``
    is the end of epoch ``max(1, floor(f * epochs + 0.5))`` (rounded half up to a whole epoch, at least the
    first); it is named by its integer percent ``round(100 * f)`` (``ckpt-10``, ``vit_s32@10.safetensors``),
    and percents must differ. 1.0 is the final weights, always written. Not part of the backbone cache's key:
    adding a fraction evaluates the kept per-epoch weights, it does not train again
    (:mod:`benchmark.backbone_cache`)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs. ``seed`` feeds partitions, init and data order (SeedSequence)."""

    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: Optional[int] = None
    """``torch.set_num_threads``; None leaves torch's default."""
    keep_freed_memory: bool = True
    """Keep memory that torch frees inside the process for reuse (glibc ``mallopt``: no ``mmap`` for large
    blocks, no heap trimming) instead of handing it back to the OS and page-faulting it in again at the next
    batch. Allocation only: results are bit-identical either way. Measured on the 2-core machines (small ViT,
    one thread, ``docs/performance.md``): evaluation at batch 500 takes 3.8 instead of 6.0 ms per image
    (at batch 128: 4.0 vs 4.4); training at batch 32 is unchanged; a whole FedAvg run of
    ``config/default.yaml``'s draft size uses 11% less CPU time (SFPrompt: 12%) and 11% more peak RSS
    (SFPrompt: 18%, 1.75 vs 1.48 GB). No effect where libc is not glibc."""
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    method_params: dict[str, Any] = field(default_factory=dict)
    """Hyper-parameters of ``train.method``, checked against that method's own frozen ``Params`` dataclass when
    the method is built (:func:`benchmark.methods.resolve_config` fills in its defaults), e.g.
    ``method_params: {keep_ratio: 0.5, el2n_timing: after_local_loss}`` for SFPrompt. Unknown keys are a
    one-line error listing the method's valid keys."""

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """Short content hash of the settings that determine the results (stamped on every result row and
        checked when a run resumes from its checkpoint). The keys of :data:`HASH_EXEMPT` are left out (always,
        or while at their neutral value): runtime settings that cannot change a result, so a run resumed with
        another thread count is not refused, and keys added later at the value that reproduces the runs from
        before them, so existing hashes stay valid."""
        doc = self.to_dict()
        for rule in HASH_EXEMPT:
            *sections, leaf = rule.key.split(".")
            node = doc
            for name in sections:
                node = node[name]
            if leaf in node and (rule.neutral is ALWAYS or node[leaf] == rule.neutral):
                del node[leaf]
        blob = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def replace(self, **overrides: Any) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. ``cfg.replace(**{"train.rounds": 2})``."""
        return from_dict(apply_overrides(self.to_dict(), overrides))


# ----------------------------------------------------------------------------------------------------------
# loading


def from_dict(raw: Mapping[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from nested dicts, rejecting unknown keys and wrong types."""
    return _build(RunConfig, raw, prefix="")


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | list[str] | None = None) -> RunConfig:
    """Load YAML (if given) and apply overrides (``{"train.rounds": 3}`` or ``["train.rounds=3"]``)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(loaded).__name__}")
        raw = loaded
    if overrides:
        if isinstance(overrides, list):
            overrides = parse_overrides(overrides)
        raw = apply_overrides(raw, overrides)
    return from_dict(raw)


def build_section(cls: type, raw: Any, prefix: str) -> Any:
    """Build the frozen dataclass ``cls`` from a mapping with this module's checks (unknown keys listed, types
    coerced), naming keys with ``prefix`` (e.g. ``"method_params."``) in errors. Methods use it for their
    ``Params``."""
    return _build(cls, raw, prefix)


@functools.cache
def _schema(cls: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """A config dataclass's fields and resolved type hints, once per class (read only). ``typing.get_type_hints``
    evaluates every string annotation again on each call: a workflow's parse builds thousands of configs, and the
    paper profile's spent 8 of its 35 s there (18,000 calls)."""
    return {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config section {where!r} must be a mapping, got {type(raw).__name__}")
    fields, hints = _schema(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + str(unknown[0])!r}; valid keys in {where}: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"config section {where!r}: {exc}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a simple type hint (int, float, str, bool, Optional[...])."""
    origin = typing.get_origin(hint)
    if hint is list or origin is list:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        inner = (typing.get_args(hint) or (None,))[0]
        return [v if inner is None else _coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return json.loads(json.dumps(dict(value)))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:  # pragma: no cover - only simple types are used above
        raise ConfigError(f"config key {key!r} has an unsupported type {hint}")
    if not ok:
        raise ConfigError(f"config key {key!r} must be {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


# ----------------------------------------------------------------------------------------------------------
# range checks (names are checked against the registries where they are used, to avoid import cycles)


def _check(cond: bool, key: str, allowed: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"config key {key!r} must be {allowed}, got {value!r}")


def check_patch_grid(img_size: int, patch_size: int) -> None:
    """Raise a one-line :class:`ConfigError` unless ``img_size`` (pixels) is a whole number of patches.

    timm's patch embedding is a strided convolution: it would silently drop the last ``img_size % patch_size``
    rows and columns of every image instead of failing.
    """
    if img_size % patch_size:
        raise ConfigError(
            f"model.img_size must be a multiple of model.patch_size (the patch grid would crop the image), "
            f"got img_size {img_size} and patch_size {patch_size}"
        )


def check_split_depth(head_blocks: int, tail_blocks: int, depth: int, where: str = "") -> None:
    """Raise a one-line :class:`ConfigError` unless the client's head and tail leave the server at least one of the
    backbone's ``depth`` blocks (and neither is negative). ``where`` prefixes the message (e.g. a workflow entry)."""
    if head_blocks < 0 or tail_blocks < 0 or head_blocks + tail_blocks >= depth:
        raise ConfigError(
            f"{where}model.head_blocks + model.tail_blocks must be below the backbone depth {depth} "
            f"(the server body needs a block), got {head_blocks} + {tail_blocks}"
        )


def _validate(cfg: RunConfig) -> None:
    p, m, t, pre = cfg.partition, cfg.model, cfg.train, cfg.pretrain
    _check(cfg.threads is None or cfg.threads >= 1, "threads", ">= 1 or null", cfg.threads)
    _check(isinstance(cfg.keep_freed_memory, bool), "keep_freed_memory", "true or false", cfg.keep_freed_memory)
    _check(
        cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda"),
        "device", "auto, cpu, cuda or cuda:N", cfg.device,
    )
    for key in ("max_train_samples", "max_test_samples", "cache_img_size"):
        v = getattr(cfg.data, key)
        _check(v is None or v > 0, f"data.{key}", "> 0 or null", v)
    vf = cfg.data.validation_fraction
    _check(vf is None or 0 < vf < 1, "data.validation_fraction", "in (0, 1) or null", vf)
    _check(p.scheme in ("iid", "dirichlet", "pathological"), "partition.scheme",
           "one of iid, dirichlet, pathological", p.scheme)
    _check(p.num_clients >= 1, "partition.num_clients", ">= 1", p.num_clients)
    _check(p.alpha > 0, "partition.alpha", "> 0", p.alpha)
    _check(p.classes_per_client >= 1, "partition.classes_per_client", ">= 1", p.classes_per_client)
    _check(p.min_partition_size >= 0, "partition.min_partition_size", ">= 0", p.min_partition_size)
    _check(m.weights == "scratch" or m.weights.startswith(("timm:", "file:")), "model.weights",
           "scratch, timm:<tag> or file:<path>", m.weights)
    for key in ARCH_KEYS:
        v = getattr(m, key)
        _check(v is None or v >= 1, f"model.{key}", ">= 1 or null", v)
    if m.img_size is not None and m.patch_size is not None:
        check_patch_grid(m.img_size, m.patch_size)
    _check(m.head_blocks >= 0, "model.head_blocks", ">= 0", m.head_blocks)
    _check(m.tail_blocks >= 0, "model.tail_blocks", ">= 0", m.tail_blocks)
    _check(m.prompt_len >= 0, "model.prompt_len", ">= 0", m.prompt_len)
    _check(m.prompt_depth in ("shallow", "client"), "model.prompt_depth", "shallow or client", m.prompt_depth)
    _check(t.rounds >= 1, "train.rounds", ">= 1", t.rounds)
    _check(0 < t.participation <= 1, "train.participation", "in (0, 1]", t.participation)
    _check(t.local_epochs >= 1, "train.local_epochs", ">= 1", t.local_epochs)
    _check(t.batch_size >= 1, "train.batch_size", ">= 1", t.batch_size)
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", ">= 1", t.eval_batch_size)
    _check(t.optimizer in ("sgd", "adamw"), "train.optimizer", "sgd or adamw", t.optimizer)
    _check(t.lr > 0, "train.lr", "> 0", t.lr)
    _check(t.momentum >= 0, "train.momentum", ">= 0", t.momentum)
    _check(t.weight_decay >= 0, "train.weight_decay", ">= 0", t.weight_decay)
    _check(t.grad_clip is None or t.grad_clip > 0, "train.grad_clip", "> 0 or null", t.grad_clip)
    _check(t.weighting in ("samples", "uniform"), "train.weighting", "samples or uniform", t.weighting)
    _check(t.eval_every >= 1, "train.eval_every", ">= 1", t.eval_every)
    _check(t.interim_eval_samples is None or t.interim_eval_samples >= 1, "train.interim_eval_samples",
           ">= 1 or null", t.interim_eval_samples)
    _check(pre.epochs >= 1, "pretrain.epochs", ">= 1", pre.epochs)
    _check(pre.batch_size >= 1, "pretrain.batch_size", ">= 1", pre.batch_size)
    _check(pre.lr > 0, "pretrain.lr", "> 0", pre.lr)
    _check(all(0 < f <= 1 for f in pre.checkpoints), "pretrain.checkpoints", "fractions in (0, 1]",
           pre.checkpoints)
    pcts = [round(100 * f) for f in pre.checkpoints]
    _check(len(set(pcts)) == len(pcts) and min(pcts, default=1) >= 1, "pretrain.checkpoints",
           "fractions with distinct integer percents (>= 1%)", pre.checkpoints)
