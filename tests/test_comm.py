"""The communication ledger: bytes = numel x element size, aggregation, totals, checkpointing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from benchmark.accounting.comm import DIRECTIONS, KINDS, CommLedger


@pytest.mark.parametrize(("dtype", "size"), [(torch.float32, 4), (torch.float16, 2), (torch.int64, 8)])
def test_bytes_are_numel_times_element_size(dtype: torch.dtype, size: int) -> None:
    ledger = CommLedger()
    t = torch.zeros(3, 5, dtype=dtype)
    assert ledger.record(0, 0, "split", "up", "smashed", t) == 15 * size
    assert ledger.record_numel(0, 0, "split", "up", "smashed", dtype, 15) == 15 * size
    row = ledger.frame().iloc[0]
    assert (row["numel"], row["bytes"], row["messages"]) == (30, 30 * size, 2)
    assert row["dtype"] == str(dtype).removeprefix("torch.")


def test_iterables_and_state_dicts() -> None:
    ledger = CommLedger()
    params = {"w": torch.zeros(4, 4), "b": torch.zeros(4), "n": torch.zeros((), dtype=torch.int64)}
    assert ledger.record(1, 2, "aggregate", "up", "params", params) == 20 * 4 + 8
    assert ledger.record(1, 2, "aggregate", "up", "params", [torch.zeros(2)]) == 8
    df = ledger.frame()
    assert df[["dtype", "numel", "bytes", "messages"]].values.tolist() == [
        ["float32", 22, 88, 2],
        ["int64", 1, 8, 1],
    ]
    with pytest.raises(TypeError):
        ledger.record(1, 2, "aggregate", "up", "params", [torch.zeros(2), 3.0])


def test_aggregation_over_identical_keys_and_sorting() -> None:
    ledger = CommLedger()
    x = torch.zeros(2, 3)
    for _ in range(5):
        ledger.record(1, 1, "split", "up", "smashed", x)
    ledger.record(0, 1, "split", "down", "grad", x)
    ledger.record(1, 0, "split", "up", "smashed", x)
    assert len(ledger) == 3
    df = ledger.frame()
    assert list(df.columns) == ["round", "client", "phase", "direction", "kind", "dtype", "numel", "bytes", "messages"]
    assert df[["round", "client"]].values.tolist() == [[0, 1], [1, 0], [1, 1]]
    assert df.iloc[2][["numel", "bytes", "messages"]].tolist() == [30, 120, 5]


def test_unknown_kind_or_direction_lists_valid_values() -> None:
    ledger = CommLedger()
    with pytest.raises(ValueError, match="smashed"):
        ledger.record(0, 0, "split", "up", "activations", torch.zeros(1))
    with pytest.raises(ValueError, match="down"):
        ledger.record_numel(0, 0, "split", "sideways", "grad", torch.float32, 1)
    with pytest.raises(ValueError, match="smashed"):
        ledger.record(0, 0, "split", "up", "bogus", [])  # empty messages are validated too
    assert len(ledger) == 0
    assert ledger.record(0, 0, "split", "up", "grad", []) == 0 and len(ledger) == 0  # a valid empty one passes
    assert set(KINDS) == {"params", "prompts", "smashed", "body_out", "grad", "labels"}
    assert DIRECTIONS == ("up", "down")


def test_totals_and_cumulative() -> None:
    ledger = CommLedger()
    ledger.record_numel(0, 0, "broadcast", "down", "params", torch.float32, 100)  # 400 B
    ledger.record_numel(0, 0, "aggregate", "up", "params", torch.float32, 100)  # 400 B
    ledger.record_numel(0, 1, "aggregate", "up", "params", torch.float16, 100)  # 200 B
    ledger.record_numel(2, 0, "split", "up", "labels", torch.int64, 10)  # 80 B
    t = ledger.totals()
    assert list(t.columns) == ["round", "bytes_up", "bytes_down", "bytes_total", "cumulative_bytes"]
    assert t.values.tolist() == [[0, 600, 400, 1000, 1000], [2, 80, 0, 80, 1080]]
    assert CommLedger().totals().empty and CommLedger().frame().empty
    assert all(str(d) == "int64" for d in t.dtypes) and all(str(d) == "int64" for d in CommLedger().totals().dtypes)


def test_record_numel_accepts_zero_and_rejects_each_negative_count() -> None:
    ledger = CommLedger()
    assert ledger.record_numel(0, 0, "split", "up", "grad", torch.float32, 0, messages=0) == 0  # nothing sent
    assert ledger.record_numel(0, 0, "split", "up", "grad", torch.float32, 3, messages=1) == 12
    assert ledger.frame()[["numel", "bytes", "messages"]].values.tolist() == [[3, 12, 1]]
    for numel, messages in ((-1, 1), (1, -1)):
        with pytest.raises(ValueError, match=f"numel and messages must be >= 0, got {numel} and {messages}"):
            ledger.record_numel(0, 0, "split", "up", "grad", torch.float32, numel, messages=messages)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype, got 'float32'"):
        ledger.record_numel(0, 0, "split", "up", "grad", "float32", 3)


def test_state_dict_round_trip() -> None:
    ledger = CommLedger()
    ledger.record(0, 0, "split", "up", "smashed", torch.zeros(2, 3, dtype=torch.float16))
    ledger.record(3, 1, "split", "up", "labels", torch.zeros(2, dtype=torch.int64))
    ledger.record_numel(3, 1, "aggregate", "down", "prompts", torch.bfloat16, 7, messages=2)
    state = json.loads(json.dumps(ledger.state_dict()))  # JSON-serialisable
    resumed = CommLedger()
    resumed.record(9, 9, "split", "up", "grad", torch.zeros(1))  # replaced by load_state_dict
    resumed.load_state_dict(state)
    pd.testing.assert_frame_equal(resumed.frame(), ledger.frame())
    pd.testing.assert_frame_equal(resumed.totals(), ledger.totals())
    resumed.record(3, 1, "split", "up", "labels", torch.zeros(2, dtype=torch.int64))
    assert resumed.frame().query("kind == 'labels'")["messages"].item() == 2
    with pytest.raises(ValueError):
        CommLedger().load_state_dict({"version": 99, "entries": []})


def test_hand_derived_split_exchange() -> None:
    """One SplitFed-style round: 2 clients x 3 batches of 8 samples (17 tokens x 64 wide, fp32), then
    FedAvg of a 1,000-parameter client part (down, then up)."""
    batch, tokens, dim, batches, part = 8, 17, 64, 3, 1000
    ledger = CommLedger()
    for client in range(2):
        ledger.record_numel(0, client, "broadcast", "down", "params", torch.float32, part)
        for _ in range(batches):
            smashed = torch.zeros(batch, tokens, dim)
            ledger.record(0, client, "split", "up", "smashed", smashed)
            ledger.record(0, client, "split", "up", "labels", torch.zeros(batch, dtype=torch.long))
            ledger.record(0, client, "split", "down", "grad", torch.zeros_like(smashed))
        ledger.record(0, client, "aggregate", "up", "params", [torch.zeros(part)])
    act = batch * tokens * dim * 4
    up_per_client = batches * (act + batch * 8) + part * 4
    down_per_client = batches * act + part * 4
    t = ledger.totals().iloc[0]
    assert t["bytes_up"] == 2 * up_per_client == 2 * (3 * (34816 + 64) + 4000)
    assert t["bytes_down"] == 2 * down_per_client
    assert t["cumulative_bytes"] == t["bytes_total"] == 2 * (up_per_client + down_per_client)
    df = ledger.frame()
    assert len(df) == len(ledger) == 2 * 5
    assert df.query("kind == 'smashed'")["messages"].tolist() == [batches, batches]


def test_record_does_not_touch_data() -> None:
    """Only metadata is read: a tensor on the meta device (no storage) is recorded fine."""
    ledger = CommLedger()
    assert ledger.record(0, 0, "split", "up", "smashed", torch.empty(1024, 768, device="meta")) == 1024 * 768 * 4


def test_loading_a_state_with_repeated_keys_adds_them_up() -> None:
    """A state written by hand (or merged from two ledgers) may list one key twice: its counts add up."""
    entry = [0, 1, "split", "up", "smashed", "float32", 6, 24, 1]
    ledger = CommLedger()
    ledger.load_state_dict({"version": 1, "entries": [entry, entry]})
    assert ledger.frame()[["numel", "bytes", "messages"]].values.tolist() == [[12, 48, 2]]
