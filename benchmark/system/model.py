"""The system model: a run's ledgers (bytes and messages, FLOPs per party) + a system profile -> time and energy.

Pure functions over the suite's two ledgers (``comm.csv``: round, client, phase, direction, kind, dtype,
numel, bytes, messages; ``flops.csv``: round, client, phase, party, samples, forward, backward_activation,
backward_weight, total) and a :class:`~benchmark.system.profiles.SystemProfile`.

Per round and sampled client c:

* compute: ``client_compute_s = client FLOPs / client rate``; ``server_compute_s = server FLOPs (spent for
  c) / server rate`` (FLOPs in fvcore's convention, rates in multiply-adds per second);
* transfer: ``up_s = bytes up × 8 / uplink``, ``down_s = bytes down × 8 / downlink``, and one one-way
  latency (RTT / 2) per message *leg*. Legs are counted from the ledger's ``messages``: per (phase,
  direction), messages of kinds that travel together count once (model state = params + prompts; smashed
  data + labels), other kinds add up. So FedAvg pays 2 legs a round (broadcast, upload); SFL pays
  2 + 2 per batch (smashed + labels up, gradient down); SFPrompt 2 + 2 per batch, or 2 + 4 per batch when
  prompts get their gradient through the server (smashed up, body output down, gradient up, gradient down):
  the sequential round trips of split training;
* ``path_s = client_compute_s + server_compute_s + transfer_s``: split training alternates between the
  parties batch by batch, so a client's own round is the sum, nothing overlaps;
* client energy: ``power × (client_compute_s + transfer_s)`` (the device is busy computing or sending; idle
  waiting is not charged). No power in the profile: NaN.

The round time depends on the method's **critical path** (each method class's ``critical_path`` attribute, a key
of :data:`CRITICAL_PATHS`):

* ``parallel_clients`` (FedAvg, FedPrompt, SFL-V1, SFPrompt): clients work in parallel and the server waits
  for all of them before aggregating: ``round = max_c path_c``. For SFL-V1 and SFPrompt the server keeps one
  copy of its part per client (SFPrompt's body is frozen and stateless), so each client's server work runs in
  parallel, at the server profile's rate (a server provisioned per client).
* ``serial_server`` (SFL-V2): one server model serves the clients in turn, so the server's work adds up over
  clients: ``round = max(max_c path_c, Σ_c server_compute_s)``: the slowest client or the server's serial
  work, whichever is longer (the clients' own compute and transfers overlap with the server serving others).

Aggregation, evaluation and the server's averaging cost nothing here (not in the FLOP ledger; small).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from benchmark.registry import Registry
from benchmark.system.profiles import SystemProfile
from benchmark.methods import method_class

MESSAGE_GROUPS = {"params": "state", "prompts": "state", "smashed": "activations", "labels": "activations",
                  "body_out": "body_out", "grad": "grad"}
"""Kinds sent in one message when they share a phase and direction (state: params + prompts; activations:
smashed data + its labels). A kind not listed is its own group."""

USAGE_COLUMNS = ["round", "client", "client_flops", "server_flops", "bytes_up", "bytes_down", "legs_up",
                 "legs_down"]

CRITICAL_PATHS: Registry[Callable[[pd.DataFrame], float]] = Registry("critical path")
"""Round time from the per-client times of one round (:func:`client_times`), by name."""


@CRITICAL_PATHS.register("parallel_clients")
def parallel_clients(times: pd.DataFrame) -> float:
    """Clients (and their server copies) in parallel; the round waits for the slowest client."""
    return float(times.path_s.max()) if len(times) else 0.0


@CRITICAL_PATHS.register("serial_server")
def serial_server(times: pd.DataFrame) -> float:
    """One shared server model serving clients in turn: its compute adds up over clients."""
    if not len(times):
        return 0.0
    return float(max(times.path_s.max(), times.server_compute_s.sum()))


def critical_path(method: str) -> Callable[[pd.DataFrame], float]:
    """The round-time function of ``method``: its class's ``critical_path`` attribute (a key of
    :data:`CRITICAL_PATHS`), so the method's identity has one home (an unknown method lists the known ones)."""
    return CRITICAL_PATHS.get(method_class(method).critical_path)


def client_usage(comm: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """Per (round, client): FLOPs per party, bytes per direction and message legs per direction.

    Args:
        comm: The communication ledger (``comm.csv``).
        flops: The compute ledger (``flops.csv``).

    Returns:
        :data:`USAGE_COLUMNS`, one row per (round, client) found in either ledger, sorted.
    """
    keys = ["round", "client"]
    parts = []
    if len(flops):
        fl = flops.pivot_table(index=keys, columns="party", values="total", aggfunc="sum", fill_value=0)
        parts.append(pd.DataFrame({"client_flops": fl.get("client", 0), "server_flops": fl.get("server", 0)},
                                  index=fl.index))
    if len(comm):
        by = comm.pivot_table(index=keys, columns="direction", values="bytes", aggfunc="sum", fill_value=0)
        groups = comm.kind.map(lambda k: MESSAGE_GROUPS.get(k, k))
        legs = (comm.assign(group=groups).groupby(keys + ["phase", "direction", "group"]).messages.max()
                .groupby(keys + ["direction"]).sum().unstack(fill_value=0))
        parts.append(pd.DataFrame({"bytes_up": by.get("up", 0), "bytes_down": by.get("down", 0)}, index=by.index))
        parts.append(pd.DataFrame({"legs_up": legs.get("up", 0), "legs_down": legs.get("down", 0)},
                                  index=legs.index))
    if not parts:
        return pd.DataFrame(columns=USAGE_COLUMNS)
    out = pd.concat(parts, axis=1).fillna(0).reset_index()
    for col in USAGE_COLUMNS[2:]:
        if col not in out:
            out[col] = 0
    return out[USAGE_COLUMNS].sort_values(keys, kind="stable").reset_index(drop=True)


def client_times(usage: pd.DataFrame, profile: SystemProfile) -> pd.DataFrame:
    """Seconds and joules per (round, client) under ``profile`` (see the module docstring for each term)."""
    c, s, link = profile.client, profile.server, profile.link
    t = usage.copy()
    t["client_compute_s"] = t.client_flops.astype(float) / c.macs_per_s
    t["server_compute_s"] = t.server_flops.astype(float) / s.macs_per_s
    t["up_s"] = t.bytes_up.astype(float) * 8 / (link.up_mbps * 1e6)
    t["down_s"] = t.bytes_down.astype(float) * 8 / (link.down_mbps * 1e6)
    t["latency_s"] = (t.legs_up + t.legs_down).astype(float) * link.rtt_ms / 2e3
    t["transfer_s"] = t.up_s + t.down_s + t.latency_s
    t["path_s"] = t.client_compute_s + t.server_compute_s + t.transfer_s
    busy = t.client_compute_s + t.transfer_s
    t["energy_j"] = busy * c.power_w if c.power_w is not None else np.nan
    return t


def round_times(usage: pd.DataFrame, method: str, profile: SystemProfile) -> pd.DataFrame:
    """Per round: ``round_s`` (by the method's critical path), ``client_compute_s``, ``transfer_s`` and
    ``path_s`` of the slowest client, ``server_compute_s`` summed over clients, ``energy_j`` summed over
    clients, ``clients``, and ``time_s`` (cumulative round time)."""
    path = critical_path(method)
    times = client_times(usage, profile)
    rows = []
    for rnd, grp in times.groupby("round", sort=True):
        slow = grp.loc[grp.path_s.idxmax()]
        rows.append({"round": int(rnd), "round_s": path(grp), "clients": len(grp),
                     "client_compute_s": float(slow.client_compute_s), "transfer_s": float(slow.transfer_s),
                     "path_s": float(slow.path_s), "server_compute_s": float(grp.server_compute_s.sum()),
                     "energy_j": float(grp.energy_j.sum(min_count=1))})
    out = pd.DataFrame(rows, columns=["round", "round_s", "clients", "client_compute_s", "transfer_s", "path_s",
                                      "server_compute_s", "energy_j"])
    out["time_s"] = out.round_s.cumsum()
    return out


def replicate(usage_one: pd.Series | dict, clients: int) -> pd.DataFrame:
    """A one-round usage frame of ``clients`` identical clients (paper-scale accounting: one client's round
    from the analytic ledgers)."""
    row = {k: usage_one[k] for k in USAGE_COLUMNS[2:]}
    return pd.DataFrame([{"round": 0, "client": c, **row} for c in range(clients)], columns=USAGE_COLUMNS)


def uplink_crossover(usage_a: pd.DataFrame, method_a: str, usage_b: pd.DataFrame, method_b: str,
                     profile: SystemProfile, rounds_a: float = 1.0, rounds_b: float = 1.0) -> tuple[float, str]:
    """The uplink bandwidth (Mbit/s) at which ``rounds_a`` rounds of A take as long as ``rounds_b`` of B.

    With parallel clients, a round's time is ``α + β / uplink`` (compute, downlink and latency in α; bytes up
    in β), so the difference of the two methods is ``Δα + Δβ / u`` and crosses zero at most once, at
    ``u* = -Δβ / Δα``; α and β come from evaluating the model at two uplinks.

    Returns:
        ``(u*, faster_below)``: the crossover in Mbit/s (``nan`` when the curves never cross: one method is
        faster at every uplink) and the method faster below it (or everywhere, when they never cross).
    """

    def total(u: float) -> float:
        prof = type(profile)(profile.client, profile.link.with_uplink(u), profile.server)
        ta = round_times(usage_a, method_a, prof).round_s.mean() * rounds_a
        tb = round_times(usage_b, method_b, prof).round_s.mean() * rounds_b
        return ta - tb

    d1, d2 = total(1.0), total(2.0)  # Δα + Δβ, Δα + Δβ/2
    dbeta = 2 * (d1 - d2)
    dalpha = d1 - dbeta
    if dalpha == 0 or -dbeta / dalpha <= 0:  # no crossing at a positive bandwidth
        winner = method_b if (dbeta > 0 or (dbeta == 0 and dalpha > 0)) else method_a
        return float("nan"), winner
    return float(-dbeta / dalpha), (method_b if dbeta > 0 else method_a)
