"""The workflow's ``system`` section: checked against the profile files when the config is loaded, and
resolved into what ``grid.json`` carries for the report (the pairs, the target fraction, clients per round,
and a copy of the profile documents, so the report reads only ``results/`` and a profile edit re-renders)."""

from __future__ import annotations

from typing import Any, Mapping

from benchmark.errors import ConfigError
from benchmark.system.profiles import profiles_from_docs, read_profile_docs


def clients_per_round(doc: Mapping[str, Any]) -> int:
    """Sampled clients per round of the runs: ``max(1, round(participation × num_clients))`` with the first
    partition's ``num_clients`` (else ``run.partition.num_clients``, else 10), as the method's sampler."""
    base = doc.get("run", {})
    first = next(iter(doc.get("partitions", {}).values()), {})
    k = int(first.get("num_clients", base.get("partition", {}).get("num_clients", 10)))
    return max(1, int(round(float(base.get("train", {}).get("participation", 1.0)) * k)))


def system_section(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``doc["system"]`` (a schema-checked workflow config) against the profile files.

    Raises:
        ConfigError: a profile file is invalid, or a pair, client, link or server names no profile.
    """
    sec = dict(doc["system"])
    docs = read_profile_docs(sec.get("profiles") or None)
    prof = profiles_from_docs(docs)
    for key, known in (("clients", prof.clients), ("links", prof.links)):
        for name in sec[key]:
            if name not in known:
                raise ConfigError(f"workflow config key 'system.{key}': {name!r} is not one of "
                                  f"{', '.join(sorted(known))} (config/system/*.yaml)")
    for spec in sec["pairs"]:
        try:
            prof.pair(spec, sec["server"])
        except ConfigError as exc:
            raise ConfigError(f"workflow config key 'system.pairs' ({spec!r}): {exc}") from None
    return {**sec, "clients_per_round": clients_per_round(doc), "profile_docs": docs}
