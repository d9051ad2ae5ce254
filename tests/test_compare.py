"""``python -m benchmark compare``: two hand-made results folders, each difference it must catch.

Each folder holds what a report writes (``tables/accuracy.csv``, ``tuning.csv``, ``claims.csv``) and one run's
``env.json``. Folder B starts as a copy of A; each test changes one thing and checks that exactly that kind of
item fails, and that the verb's exit status says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark.__main__ import main
from benchmark.errors import BenchmarkError
from benchmark.report.compare import compare

ACCURACY = pd.DataFrame({
    "backbone": ["vit_s32"] * 3, "dataset": ["cifar10"] * 3, "partition": ["iid"] * 3,
    "method": ["fedavg", "sfprompt", "linear_probe"],
    "accuracy_mean": [60.0, 55.0, 38.0], "accuracy_ci95": [2.0, 1.5, 1.3], "seeds": [3, 3, 3],
})
TUNING = pd.DataFrame({
    "backbone": ["vit_s32"] * 4, "dataset": ["cifar10"] * 4, "method": ["fedavg"] * 2 + ["sfprompt"] * 2,
    "partition": ["iid"] * 4, "seed": [0] * 4, "validation_fraction": [0.2] * 4,
    "multiplier": [1.0, 3.0, 3.0, 10.0], "lr": [0.02, 0.06, 0.06, 0.2], "val_accuracy": [50.0, 52.0, 40.0, 45.0],
    "diverged": [False] * 4, "chosen": [False, True, False, True],
})
CLAIMS = pd.DataFrame({
    "claim": ["local_compute", "accuracy"], "statement": ["x", "y"], "paper": ["0.46%", "competitive"],
    "ours": ["0.5%", "-5.0 ± 1.0 pp"], "ours_value": [0.5, -5.0], "range": ["–", "–"], "source": ["analytic", "measured"],
    "backbone": ["ViT-B/16", "vit_s32"], "setting": ["split 1/1", "cifar10, iid, n = 3 seed(s), margin 2 pp"],
    "verdict": ["reproduces", "not reproduced"], "note": ["", ""],
})


def _folder(root: Path, accuracy=ACCURACY, tuning=TUNING, claims=CLAIMS, capability="AVX512") -> Path:
    (root / "tables").mkdir(parents=True)
    accuracy.to_csv(root / "tables" / "accuracy.csv", index=False)
    tuning.to_csv(root / "tables" / "tuning.csv", index=False)
    claims.to_csv(root / "tables" / "claims.csv", index=False)
    run = root / "runs" / "vit_s32" / "cifar10" / "iid" / "fedavg" / "seed0"
    run.mkdir(parents=True)
    (run / "env.json").write_text(json.dumps({"git_revision": "abc", "packages": {"torch": "2.14.1"},
                                              "numerics": {"cpu_capability": capability, "env": {}}}))
    return root


def _failures(tmp_path: Path, **changes) -> dict[str, int]:
    a = _folder(tmp_path / "a")
    b = _folder(tmp_path / "b", **changes)
    return compare(a, b).failures


def test_equal_folders_compare_equal_and_exit_zero(tmp_path, capsys):
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b", capability="AVX2")
    result = compare(a, b)
    assert result.ok, result.summary()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    assert "same:" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert "compare_accuracy.csv" in written and "compare_fingerprints.md" in written
    fp = pd.read_csv(tmp_path / "cmp" / "compare_fingerprints.csv")
    row = fp[fp.field == "cpu_capability"].iloc[0]
    assert (row.a, row.b, bool(row.same)) == ("AVX512", "AVX2", False)  # shown, but not a failure


def test_a_moved_learning_rate_choice_fails(tmp_path, capsys):
    moved = TUNING.assign(chosen=[True, False, False, True])  # FedAvg picks x1 instead of x3
    assert _failures(tmp_path, tuning=moved) == {"accuracy cells": 0, "learning-rate choices": 1,
                                                 "claim verdicts": 0}
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_a_flipped_verdict_fails(tmp_path):
    flipped = CLAIMS.assign(verdict=["reproduces", "inconclusive"])
    assert _failures(tmp_path, claims=flipped) == {"accuracy cells": 0, "learning-rate choices": 0,
                                                   "claim verdicts": 1}


@pytest.mark.parametrize("folder, mean, half, fails", [
    ("b", 61.9, 2.0, False),  # each inside the other's interval (A: 60 ± 2)
    ("b", 62.1, 2.0, True),   # B's 62.1 outside A's 60 ± 2
    ("b", 61.0, 0.5, True),   # A's 60 outside B's tight 61 ± 0.5, though B lies inside A's interval
    ("a", 61.0, 0.5, True),   # the same, the other way round
])
def test_a_cell_outside_the_other_interval_fails(tmp_path, folder, mean, half, fails):
    acc = ACCURACY.copy()
    acc.loc[0, ["accuracy_mean", "accuracy_ci95"]] = [mean, half]
    other = ACCURACY.assign(accuracy_mean=ACCURACY.accuracy_mean.where(acc.index > 0, 60.0))
    a = _folder(tmp_path / "a", accuracy=acc if folder == "a" else other)
    b = _folder(tmp_path / "b", accuracy=acc if folder == "b" else other)
    assert compare(a, b).failures["accuracy cells"] == int(fails)


def test_a_cell_missing_from_one_folder_fails(tmp_path):
    assert _failures(tmp_path, accuracy=ACCURACY.iloc[:2])["accuracy cells"] == 1


def test_one_seed_cells_agree_only_when_equal(tmp_path):
    one = ACCURACY.assign(accuracy_ci95=float("nan"), seeds=1)
    a = _folder(tmp_path / "a", accuracy=one)
    assert compare(a, _folder(tmp_path / "b", accuracy=one)).ok
    moved = one.copy()
    moved.loc[0, "accuracy_mean"] = 60.01
    assert compare(a, _folder(tmp_path / "c", accuracy=moved)).failures["accuracy cells"] == 1


def test_a_folder_without_a_report_is_one_clear_error(tmp_path):
    a = _folder(tmp_path / "a")
    with pytest.raises(BenchmarkError, match="accuracy.csv not found"):
        compare(a, tmp_path / "empty")


def test_diverged_cells_agree_only_when_as_many_seeds_diverged(tmp_path):
    gone = ACCURACY.assign(diverged_seeds=[3, 0, 0])
    gone.loc[0, ["accuracy_mean", "accuracy_ci95", "seeds"]] = [float("nan"), float("nan"), 0]
    a = _folder(tmp_path / "a", accuracy=gone)
    assert compare(a, _folder(tmp_path / "b", accuracy=gone)).ok  # both diverged in every seed: the same result
    assert compare(a, _folder(tmp_path / "c")).failures["accuracy cells"] == 1  # finished on one side only
    table = compare(a, _folder(tmp_path / "d", accuracy=gone)).tables[0]
    assert table.display.A.iloc[0] == "diverged (3/3 seeds)" and table.data.status.iloc[0] == "agree"
