"""The compute ledger: FLOPs each party executes, per round, client and phase.

Costs are per-sample :class:`~benchmark.accounting.flops.FlopCount` values (fvcore forward counts plus the
backward actually executed, one multiply-add = one FLOP) multiplied by the number of samples a loop really
processed. Phases: ``el2n`` (SFPrompt's scoring), ``local_loss`` (SFPrompt's body-skipping update),
``split`` (split training), ``local`` (a baseline's local epochs). Evaluation is excluded, as in the paper.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from benchmark.accounting.flops import FLOP_CONVENTION, FlopCount

PARTIES = ("client", "server")
COLUMNS = ["round", "client", "phase", "party", "samples", "forward", "backward_activation", "backward_weight",
           "total"]


class ComputeLedger:
    """Accumulates FLOPs by (round, client, phase, party)."""

    convention = FLOP_CONVENTION

    def __init__(self) -> None:
        self._rows: dict[tuple[int, int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def record(self, round: int, client: int, phase: str, party: str, per_sample: FlopCount, samples: int) -> None:
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}; valid: {', '.join(PARTIES)}")
        row = self._rows[(round, client, phase, party)]
        row[0] += samples
        row[1] += per_sample.forward * samples
        row[2] += per_sample.backward_activation * samples
        row[3] += per_sample.backward_weight * samples

    def frame(self) -> pd.DataFrame:
        rows = [
            (r, c, ph, pa, s, f, ba, bw, f + ba + bw)
            for (r, c, ph, pa), (s, f, ba, bw) in sorted(self._rows.items())
        ]
        return pd.DataFrame(rows, columns=COLUMNS)

    def state_dict(self) -> dict:
        return {"rows": [list(k) + list(v) for k, v in self._rows.items()]}

    def load_state_dict(self, state: dict) -> None:
        self._rows.clear()
        for r, c, ph, pa, s, f, ba, bw in state["rows"]:
            self._rows[(int(r), int(c), str(ph), str(pa))] = [int(s), int(f), int(ba), int(bw)]

    def __len__(self) -> int:
        return len(self._rows)
