"""The communication ledger: every tensor that crosses client <-> server, recorded where it is sent.

Paper: SFPrompt (Cao, Zhu, Gong, arXiv 2407.17533) claims 53% less communication than federated full
fine-tuning. The suite counts payload bytes only: **bytes = numel x element size** of each tensor sent,
with no protocol framing, compression or serialisation overhead (our choice, the same for every method).

Conventions:

* ``direction``: ``up`` = client -> server, ``down`` = server -> client (``DIRECTIONS``).
* ``kind`` (``KINDS``): ``params`` (model parameters: FedAvg's model, SFPrompt's tail), ``prompts``
  (prompt tokens), ``smashed`` (activations at the cut, client -> server), ``body_out`` (the server body's
  output, server -> client), ``grad`` (activation gradients at a cut, either way), ``labels``.
* ``round`` and ``client`` are integers chosen by the caller; ``phase`` is a free label such as
  ``split``, ``aggregate`` or ``broadcast``.
* ``messages`` counts calls: one :meth:`CommLedger.record` call is one message per dtype it contains.

The ledger is called per batch in training loops, so :meth:`CommLedger.record` reads tensor metadata only
(``numel``, ``element_size``: no device sync, no copy) and adds to a dict keyed by
(round, client, phase, direction, kind, dtype); DataFrames are built only by :meth:`CommLedger.frame` and
:meth:`CommLedger.totals`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping

import pandas as pd
import torch

KINDS = ("params", "prompts", "smashed", "body_out", "grad", "labels")
DIRECTIONS = ("up", "down")  # up: client -> server, down: server -> client

FRAME_COLUMNS = ("round", "client", "phase", "direction", "kind", "dtype", "numel", "bytes", "messages")
TOTALS_COLUMNS = ("round", "bytes_up", "bytes_down", "bytes_total", "cumulative_bytes")
_STATE_VERSION = 1
_KEY_COLUMNS = list(FRAME_COLUMNS[:6])

Key = tuple[int, int, str, str, str, torch.dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in a CommLedger state dict")
    return dtype


class CommLedger:
    """Aggregated record of bytes sent between clients and the server.

    Example:
        >>> ledger = CommLedger()
        >>> ledger.record(0, 3, "split", "up", "smashed", torch.zeros(8, 17, 64))
        34816
        >>> ledger.totals()["bytes_up"].tolist()
        [34816]
    """

    def __init__(self) -> None:
        # key -> [numel, bytes, messages]; lists so the hot path mutates in place.
        self._entries: dict[Key, list[int]] = {}

    # ------------------------------------------------------------------ recording (hot path)
    @staticmethod
    def _key(round: int, client: int, phase: str, direction: str, kind: str, dtype: torch.dtype) -> Key:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        if not isinstance(phase, str) or not phase:
            raise ValueError(f"phase must be a non-empty string, got {phase!r}")
        return (operator.index(round), operator.index(client), phase, direction, kind, dtype)

    def _add(self, key: Key, numel: int, nbytes: int, messages: int) -> None:
        acc = self._entries.get(key)
        if acc is None:
            self._entries[key] = [numel, nbytes, messages]
        else:
            acc[0] += numel
            acc[1] += nbytes
            acc[2] += messages

    def record(self, round: int, client: int, phase: str, direction: str, kind: str,
               tensor: torch.Tensor | Iterable[torch.Tensor] | Mapping[str, torch.Tensor]) -> int:
        """Record one message: a tensor, an iterable of tensors, or a mapping (e.g. a state dict).

        Args:
            round: Federated round (0-based, caller's convention).
            client: Client id.
            phase: Free label of the step that sends it (``split``, ``aggregate``, ...).
            direction: ``up`` (client -> server) or ``down`` (server -> client).
            kind: One of :data:`KINDS`.
            tensor: What is sent. Only metadata is read: no copy, no device sync.

        Returns:
            Bytes recorded: sum of ``numel * element_size`` over the tensors.

        Raises:
            ValueError: unknown ``direction`` or ``kind`` (the message lists the valid values).
            TypeError: an element is not a tensor.
        """
        if isinstance(tensor, torch.Tensor):
            dtype = tensor.dtype
            numel = tensor.numel()
            nbytes = numel * tensor.element_size()
            self._add(self._key(round, client, phase, direction, kind, dtype), numel, nbytes, 1)
            return nbytes
        tensors = tensor.values() if isinstance(tensor, Mapping) else tensor
        per_dtype: dict[torch.dtype, list[int]] = {}
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"CommLedger.record expects tensors, got {type(t).__name__}")
            acc = per_dtype.setdefault(t.dtype, [0, 0])
            n = t.numel()
            acc[0] += n
            acc[1] += n * t.element_size()
        total = 0
        for dtype, (numel, nbytes) in per_dtype.items():
            self._add(self._key(round, client, phase, direction, kind, dtype), numel, nbytes, 1)
            total += nbytes
        if not per_dtype:  # still validate the labels of an empty message
            self._key(round, client, phase, direction, kind, torch.float32)
        return total

    def record_numel(self, round: int, client: int, phase: str, direction: str, kind: str, dtype: torch.dtype,
                     numel: int, messages: int = 1) -> int:
        """Record ``numel`` elements of ``dtype`` without tensors (analytic accounting).

        ``round``, ``client``, ``phase``, ``direction`` and ``kind`` are as in :meth:`record`.

        Args:
            dtype: Element type; its size in bytes is ``dtype.itemsize``.
            numel: Total elements over all the messages (>= 0).
            messages: How many messages carried them (>= 0).

        Returns:
            Bytes recorded: ``numel * dtype.itemsize``.
        """
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        numel, messages = operator.index(numel), operator.index(messages)
        if numel < 0 or messages < 0:
            raise ValueError(f"numel and messages must be >= 0, got {numel} and {messages}")
        nbytes = numel * dtype.itemsize
        self._add(self._key(round, client, phase, direction, kind, dtype), numel, nbytes, messages)
        return nbytes

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Number of aggregated entries (distinct round, client, phase, direction, kind, dtype)."""
        return len(self._entries)

    def frame(self) -> pd.DataFrame:
        """One row per (round, client, phase, direction, kind, dtype), sorted by those columns.

        Columns: ``round, client, phase, direction, kind, dtype`` (dtype as a name, e.g. ``float32``),
        ``numel, bytes, messages`` (sums over the recorded messages).
        """
        rows = [
            (r, c, ph, d, k, _dtype_name(dt), n, b, m) for (r, c, ph, d, k, dt), (n, b, m) in self._entries.items()
        ]
        df = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        df = df.astype({"round": "int64", "client": "int64", "numel": "int64", "bytes": "int64", "messages": "int64"})
        return df.sort_values(_KEY_COLUMNS, kind="stable").reset_index(drop=True)

    def totals(self) -> pd.DataFrame:
        """Bytes per round: ``round, bytes_up, bytes_down, bytes_total, cumulative_bytes``.

        Only rounds with at least one record appear; ``cumulative_bytes`` sums ``bytes_total`` over
        rounds up to and including this one.
        """
        per: dict[int, list[int]] = {}
        for (r, _c, _ph, d, _k, _dt), (_n, b, _m) in self._entries.items():
            acc = per.setdefault(r, [0, 0])
            acc[0 if d == "up" else 1] += b
        rows = [(r, up, down, up + down) for r, (up, down) in sorted(per.items())]
        df = pd.DataFrame(rows, columns=list(TOTALS_COLUMNS[:4]), dtype="int64")
        df["cumulative_bytes"] = df["bytes_total"].cumsum().astype("int64")
        return df

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """JSON-serialisable state: ``{"version": 1, "entries": [[round, client, phase, direction, kind,
        dtype name, numel, bytes, messages], ...]}``."""
        entries = [
            [r, c, ph, d, k, _dtype_name(dt), n, b, m] for (r, c, ph, d, k, dt), (n, b, m) in self._entries.items()
        ]
        return {"version": _STATE_VERSION, "entries": entries}

    def load_state_dict(self, d: dict) -> None:
        """Replace the ledger's contents with a :meth:`state_dict` (for resuming a run).

        Raises:
            ValueError: unknown version, malformed entry, or unknown kind/direction/dtype.
        """
        if d.get("version") != _STATE_VERSION:
            raise ValueError(f"CommLedger state version {d.get('version')!r} unsupported; expected {_STATE_VERSION}")
        entries: dict[Key, list[int]] = {}
        for e in d["entries"]:
            if len(e) != len(FRAME_COLUMNS):
                raise ValueError(f"malformed CommLedger entry {e!r}; expected {', '.join(FRAME_COLUMNS)}")
            r, c, ph, di, k, dt, n, b, m = e
            key = self._key(r, c, ph, di, k, _dtype_from_name(dt))
            acc = entries.setdefault(key, [0, 0, 0])
            acc[0] += int(n)
            acc[1] += int(b)
            acc[2] += int(m)
        self._entries = entries
