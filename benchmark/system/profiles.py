"""System profiles: devices (client and server compute) and links (bandwidth, latency), read from data files.

The files are ``config/system/devices.yaml`` and ``config/system/links.yaml``; every number in them is a
mapping ``{value: ..., source: "..."}`` naming where it comes from (a benchmark page, datasheet or paper),
so a table built from them can cite each figure. Bad files fail with one line naming the file and key.

Units: compute rates in multiply-adds per second (fvcore's convention, the suite's FLOP: 1 FLOP = 1
multiply-add); a device may give ``matmul_gflops`` (a dense matmul/LINPACK rate in the usual convention of
2 FLOPs per multiply-add), turned into an effective training rate as ``matmul_gflops / 2 ×
training_efficiency``, or ``train_gmacs`` (an effective training rate, already in multiply-adds, as measured
here by :mod:`benchmark.system.calibrate`). Bandwidth in Mbit/s (1e6 bit/s), round-trip time in ms, power
in W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchmark.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "system"
"""The profile files of a source checkout (``config/system``)."""


@dataclass(frozen=True)
class Device:
    """A compute device (a client class or a server).

    Attributes:
        name: Key in ``devices.yaml``.
        label: What it is, in words.
        macs_per_s: Effective training rate, multiply-adds per second.
        power_w: Power while busy (W); None when the profile gives none (energy is then not computed).
        sources: Field -> citation.
    """

    name: str
    label: str
    macs_per_s: float
    power_w: float | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Link:
    """A client <-> server network link: ``up_mbps`` (client -> server), ``down_mbps``, ``rtt_ms``."""

    name: str
    label: str
    up_mbps: float
    down_mbps: float
    rtt_ms: float
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_uplink(self, up_mbps: float) -> "Link":
        """The same link with another uplink bandwidth (for the crossover analysis)."""
        return Link(self.name, self.label, up_mbps, self.down_mbps, self.rtt_ms, self.sources)


@dataclass(frozen=True)
class SystemProfile:
    """One (client class, link) pair served by one server: what the model turns ledgers into time with."""

    client: Device
    link: Link
    server: Device

    @property
    def name(self) -> str:
        """``client/link``, the pair's label in tables and figures."""
        return f"{self.client.name}/{self.link.name}"


@dataclass(frozen=True)
class Profiles:
    """Everything in the profile files, by name."""

    clients: dict[str, Device]
    servers: dict[str, Device]
    links: dict[str, Link]
    training_efficiency: float
    efficiency_source: str = ""
    folder: str = ""

    def pair(self, spec: str, server: str) -> SystemProfile:
        """The profile ``client/link`` (e.g. ``rpi4/4g``) served by ``server``."""
        client, sep, link = spec.partition("/")
        if not sep:
            raise ConfigError(f"system pair {spec!r}: expected CLIENT/LINK, e.g. rpi4/4g")
        return SystemProfile(_pick(self.clients, client, "client"), _pick(self.links, link, "link"),
                             _pick(self.servers, server, "server"))

    def citations(self) -> list[tuple[str, str, str, str]]:
        """(kind, name, field, source) of every figure, for tables and docs."""
        out = [("devices", "*", "training_efficiency", self.efficiency_source)]
        for kind, items in (("client", self.clients), ("server", self.servers), ("link", self.links)):
            for name, item in items.items():
                out += [(kind, name, f, s) for f, s in item.sources.items()]
        return out


def _pick(items: Mapping[str, Any], name: str, kind: str) -> Any:
    if name not in items:
        raise ConfigError(f"unknown system {kind} {name!r}; valid: {', '.join(sorted(items))}")
    return items[name]


def _number(where: str, entry: Any, positive: bool = True, allow_inf: bool = False) -> tuple[float, str]:
    """``{value, source}`` -> (value, source), with one-line errors."""
    if not isinstance(entry, Mapping) or set(entry) != {"value", "source"}:
        raise ConfigError(f"{where}: expected a mapping with exactly 'value' and 'source' (every figure cites "
                          f"where it comes from), got {entry!r}")
    value, source = entry["value"], entry["source"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{where}.value: expected a number, got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise ConfigError(f"{where}.value: must be finite, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{where}.value: must be {'> 0' if positive else '>= 0'}, got {value!r}")
    if not isinstance(source, str) or len(source.strip()) < 10:
        raise ConfigError(f"{where}.source: cite where the figure comes from (a page, datasheet or paper)")
    return float(value), source.strip()


def _check_keys(where: str, entry: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
    extra = [k for k in entry if k not in allowed]
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; valid: {', '.join(allowed)}")


def _device(where: str, name: str, entry: Any, efficiency: float) -> Device:
    _check_keys(where, entry, ("label", "matmul_gflops", "train_gmacs", "power_w"))
    rates = [k for k in ("matmul_gflops", "train_gmacs") if k in entry]
    if len(rates) != 1:
        raise ConfigError(f"{where}: give exactly one of matmul_gflops (dense matmul FLOP/s, 2 per multiply-add) "
                          f"or train_gmacs (effective training multiply-adds/s)")
    sources = {}
    value, sources[rates[0]] = _number(f"{where}.{rates[0]}", entry[rates[0]])
    macs = value * 1e9 * (efficiency / 2 if rates[0] == "matmul_gflops" else 1.0)
    power = None
    if "power_w" in entry:
        power, sources["power_w"] = _number(f"{where}.power_w", entry["power_w"])
    return Device(name, str(entry.get("label", name)), macs, power, sources)


def _link(where: str, name: str, entry: Any) -> Link:
    _check_keys(where, entry, ("label", "up_mbps", "down_mbps", "rtt_ms"))
    sources, vals = {}, {}
    for key in ("up_mbps", "down_mbps", "rtt_ms"):
        if key not in entry:
            raise ConfigError(f"{where}: missing {key!r} (up_mbps, down_mbps, rtt_ms are required)")
        vals[key], sources[key] = _number(f"{where}.{key}", entry[key], positive=key != "rtt_ms",
                                          allow_inf=key != "rtt_ms")
    return Link(name, str(entry.get("label", name)), vals["up_mbps"], vals["down_mbps"], vals["rtt_ms"], sources)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"system profile file {str(path)!r} does not exist")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"system profile file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"system profile file {str(path)!r} must hold a mapping")
    return doc


def read_profile_docs(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The raw ``{"devices": ..., "links": ...}`` documents of ``folder`` (default :data:`PROFILE_DIR`)."""
    folder = Path(folder) if folder else PROFILE_DIR
    return {"devices": _read(folder / "devices.yaml"), "links": _read(folder / "links.yaml"),
            "folder": str(folder)}


def load_profiles(folder: str | Path | None = None) -> Profiles:
    """Read and validate ``devices.yaml`` and ``links.yaml`` in ``folder`` (default :data:`PROFILE_DIR`).

    Raises:
        ConfigError: one line naming the file and key (a missing source, a non-positive rate, ...).
    """
    return profiles_from_docs(read_profile_docs(folder))


def profiles_from_docs(docs: Mapping[str, Any]) -> Profiles:
    """Validate the documents of :func:`read_profile_docs` (also as copied into a workflow's ``grid.json``)."""
    folder = Path(docs.get("folder", ""))
    devices, links = folder / "devices.yaml", folder / "links.yaml"
    ddoc, ldoc = docs["devices"], docs["links"]
    _check_keys(str(devices), ddoc, ("training_efficiency", "clients", "servers"))
    _check_keys(str(links), ldoc, ("links",))
    if "training_efficiency" not in ddoc:
        raise ConfigError(f"{devices}: missing 'training_efficiency' (the share of the matmul rate a training "
                          f"step reaches)")
    eff, eff_source = _number(f"{devices}: training_efficiency", ddoc["training_efficiency"])
    if eff > 1:
        raise ConfigError(f"{devices}: training_efficiency.value must be <= 1, got {eff}")
    out: dict[str, dict] = {}
    for section in ("clients", "servers"):
        items = ddoc.get(section) or {}
        if not items:
            raise ConfigError(f"{devices}: '{section}' must list at least one device")
        out[section] = {n: _device(f"{devices}: {section}.{n}", n, e, eff) for n, e in items.items()}
    if not ldoc.get("links"):
        raise ConfigError(f"{links}: 'links' must list at least one link")
    link_items = {n: _link(f"{links}: links.{n}", n, e) for n, e in ldoc["links"].items()}
    return Profiles(out["clients"], out["servers"], link_items, eff, eff_source, str(folder))
