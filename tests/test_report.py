"""The report: pure table, claims and figure functions on synthetic frames, and the rendered smoke outputs."""

from __future__ import annotations

import html as html_lib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from benchmark.report import claims, figures, tables
from tests.test_workflow import CONFIGS, ROOT, smoke_results, smoke_workflow  # noqa: F401 (session fixture)

CELL = {"backbone": "b", "dataset": "d", "partition": "iid"}


def _runs(rows: list[tuple]) -> pd.DataFrame:
    """Run summaries from (method, seed, final_accuracy, client_gflops_round, comm_mb_round, head, tail)."""
    out = []
    for method, seed, acc, gflops, mb, head, tail in rows:
        out.append({**CELL, "variant": method, "method": method, "seed": seed, "dir": f"runs/{method}/seed{seed}",
                    "final_accuracy": acc, "client_gflops_round": gflops, "comm_mb_round": mb,
                    "head_blocks": head, "tail_blocks": tail, "config_hash": "h"})
    return pd.DataFrame(out)


def _accounting(label: str, backbone: str, split: tuple[int, int], sf_flops: float, sf_mb: float,
                break_even: float = 500.0) -> pd.DataFrame:
    base = {"label": label, "backbone": backbone, "split": f"h{split[0]}t{split[1]}", "head_blocks": split[0],
            "tail_blocks": split[1], "samples_per_client": 500, "trained": False}
    rows = [
        {**base, "method": "fedavg", "client_params_stored": 86e6, "client_params_trainable": 86e6,
         "client_gflops_round": 100.0, "comm_mb_up": 343.0, "comm_mb_down": 343.0, "comm_mb_total": 686.0,
         "break_even_samples": math.nan},
        {**base, "method": "sfprompt", "client_params_stored": 1e6, "client_params_trainable": 2e4,
         "client_gflops_round": sf_flops, "comm_mb_up": sf_mb / 2, "comm_mb_down": sf_mb / 2, "comm_mb_total": sf_mb,
         "break_even_samples": break_even},
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# tables


def test_accuracy_table_mean_and_ci_over_seeds():
    runs = _runs([("fedavg", 0, 80.0, 1, 1, 1, 1), ("fedavg", 1, 84.0, 1, 1, 1, 1), ("sfprompt", 0, 70.0, 1, 1, 1, 1)])
    table = tables.accuracy_table(runs)
    fedavg = table.data.set_index("method").loc["fedavg"]
    assert (fedavg.accuracy_mean, fedavg.seeds) == (82.0, 2)
    # by hand: t(0.975, 1 dof) = 12.706, sem = sqrt(8) / sqrt(2) = 2
    assert fedavg.accuracy_ci95 == pytest.approx(12.7062 * 2.0, rel=1e-4)
    assert table.display.loc[0, "FedAvg"] == "82.0 ± 25.4 (n=2)" and table.display.loc[0, "SFPrompt"] == "70.0 (n=1)"
    assert "Backbone" not in table.display  # one backbone: stated in the notes instead
    assert "fvcore" in table.caption and "95% confidence interval" in table.caption and "n = 1/2" in table.caption


def test_confidence_intervals_equal_a_hand_computation_with_scipy():
    from scipy import stats as st

    from benchmark import stats

    values = [61.0, 64.5, 59.0, 62.5]
    mean, half, n = stats.mean_ci(values)
    lo, hi = st.t.interval(0.95, df=3, loc=sum(values) / 4, scale=st.sem(values))
    assert (n, mean) == (4, pytest.approx(61.75)) and half == pytest.approx((hi - lo) / 2)
    assert stats.mean_ci([70.0]) == (70.0, pytest.approx(math.nan, nan_ok=True), 1)
    assert stats.mean_ci([0.1] * 3)[1:] == (0.0, 3)  # equal seeds: exactly 0, shown "± 0", not "± 1.7e-17"
    assert stats.mean_ci([26.0, 26.000000000000004, 26.0])[1] == 0.0  # the same energy summed in another order
    assert stats.mean_ci([26.0, 26.0001, 26.0])[1] > 0  # a real spread, however small, keeps its interval
    a = pd.Series([60.0, 62.0, 65.0], index=[0, 1, 2])
    b = pd.Series([59.0, 60.5, 64.0, 99.0], index=[0, 1, 2, 3])  # seed 3 has no pair: left out
    d, h, n = stats.paired_difference(a, b)
    diffs = [1.0, 1.5, 1.0]
    assert n == 3 and d == pytest.approx(sum(diffs) / 3)
    assert h == pytest.approx(st.t.ppf(0.975, 2) * st.sem(diffs))
    assert stats.binomial_se(50.0, 500) == pytest.approx(100 * math.sqrt(0.25 / 500))


@pytest.mark.parametrize("mean,half,n,expected", [
    (0.5, 1.0, 3, "reproduced"), (-1.5, 0.4, 3, "reproduced"), (-5.0, 1.0, 3, "not reproduced"),
    (-2.0, 1.0, 3, "inconclusive"), (3.0, math.nan, 1, "inconclusive")])
def test_margin_verdict_never_claims_more_than_its_interval(mean, half, n, expected):
    from benchmark.stats import margin_verdict

    assert margin_verdict(mean, half, n, margin=2.0) == expected


def test_paired_table_pairs_by_seed():
    runs = _runs([("fedavg", 0, 80.0, 1, 1, 1, 1), ("fedavg", 1, 84.0, 1, 1, 1, 1),
                  ("sfprompt", 0, 79.0, 1, 1, 1, 1), ("sfprompt", 1, 83.0, 1, 1, 1, 1)])
    table = tables.paired_table(runs)
    row = table.data.iloc[0]
    assert (row.method, row.diff_mean, row.diff_ci95, row.seeds) == ("sfprompt", -1.0, 0.0, 2)
    assert table.display.iloc[0]["Δ vs FedAvg (pp)"] == "-1.0 ± 0.0"


def test_paired_caption_says_the_pooled_references_do_not_share_the_partition():
    """A reference run (a ``label``: pooled training data, one client) is paired with FedAvg by seed only; the
    caption says so, and claims the shared partition and sampling for the federated methods alone."""
    runs = _runs([("fedavg", 0, 80.0, 1, 1, 1, 1), ("fedavg", 1, 84.0, 1, 1, 1, 1),
                  ("sfprompt", 0, 79.0, 1, 1, 1, 1), ("sfprompt", 1, 83.0, 1, 1, 1, 1)]).assign(label=None)
    federated = tables.paired_table(runs).caption
    assert "for the federated methods: same partition" in federated and "pooled" not in federated
    central = _runs([("central_ft", 0, 90.0, 1, 1, 1, 1), ("central_ft", 1, 91.0, 1, 1, 1, 1)]).assign(
        label="Centralized FT")
    both = tables.paired_table(pd.concat([runs, central], ignore_index=True))
    assert set(both.data.method) == {"sfprompt", "central_ft"}
    assert ("References (Centralized FT) are trained on the pooled training data (one client): they do not share "
            "the partition or the client sampling, so their difference is paired by the seed") in both.caption


def test_statistics_at_their_edges_by_hand():
    """Each branch of the statistics module on values whose answer is known by hand (binary fractions, so the
    boundaries are exact): a verdict never claims more than its interval, one seed never gives an interval,
    and the CI uses the confidence it is given."""
    from scipy import stats as st

    from benchmark import stats

    # the CI's edge exactly at -margin is not "above" nor "below" it; one seed or a NaN is never a verdict
    assert stats.margin_verdict(-1.5, 0.5, 3, margin=2.0) == "inconclusive"
    assert stats.margin_verdict(-2.5, 0.5, 3, margin=2.0) == "inconclusive"
    assert stats.margin_verdict(0.5, 0.25, 2, margin=2.0) == "reproduced"
    assert stats.margin_verdict(0.5, 0.25, 1, margin=2.0) == "inconclusive"
    assert stats.margin_verdict(math.nan, 0.25, 3, margin=2.0) == "inconclusive"
    # "equal up to float rounding" is relative to the mean: 1e-7 is rounding at 1e6, a spread at 1e-3
    assert stats.mean_ci([1e6, 1e6 + 1e-7])[1] == 0.0
    assert stats.mean_ci([1e-3, 1e-3 + 1e-12])[1] > 0
    assert stats.mean_ci([1.0, None, math.nan, 3.0])[::2] == (2.0, 2)  # missing values are left out
    a, b = pd.Series([60.0, 62.0, 65.0]), pd.Series([59.0, 60.5, 64.0])
    _, half, n = stats.paired_difference(a, b, confidence=0.9)
    assert n == 3 and half == pytest.approx(st.t.ppf(0.95, 2) * st.sem([1.0, 1.5, 1.0]))
    band = stats.seed_band(pd.DataFrame({"x": [1, 1, 2], "y": [1.0, 3.0, 5.0]}), "x", "y", confidence=0.9)
    assert list(band.columns) == ["x", "mean", "half", "n"]
    assert band.values.tolist() == [[1, 2.0, pytest.approx(st.t.ppf(0.95, 1)), 2], [2, 5.0, 0.0, 1]]
    assert stats.binomial_se(150.0, 100) == 0.0 and stats.binomial_se(-10.0, 100) == 0.0  # p clamped to [0, 1]
    assert math.isnan(stats.binomial_se(50.0, 0))
    assert stats.fmt_ci(1.0, 0.5, 0) == "–" and stats.fmt_ci(math.nan, 0.5, 3) == "–"
    assert stats.fmt_ci(1.0, 0.5, 1) == "1.0" and stats.fmt_ci(1.0, math.nan, 3) == "1.0"
    assert stats.fmt_ci(1.0, 0.5, 2) == "1.0 ± 0.5"
    assert stats.fmt_signed_ci(1.0, 0.5, 0) == "–" and stats.fmt_signed_ci(math.nan, 0.5, 3) == "–"
    assert stats.fmt_signed_ci(1.0, 0.5, 1) == "+1.0" and stats.fmt_signed_ci(-1.0, math.nan, 3) == "-1.0"
    assert stats.fmt_signed_ci(-1.0, 0.5, 2) == "-1.0 ± 0.5"


def test_fmt_helpers():
    from benchmark.stats import fmt_ci

    assert fmt_ci(1.234, math.nan, 1) == "1.2"
    assert fmt_ci(math.nan, math.nan, 0) == "–"
    assert tables.fmt_count(85_806_346) == "85.8M" and tables.fmt_count(16_906) == "16.9k"
    assert tables.fmt_num(0.4454) == "0.445" and tables.fmt_num(26320.0) == "26,320"


def test_resource_table_is_relative_to_the_reference_and_carries_measured_cost():
    acc = _accounting("b", "vit_tiny_patch16_224", (1, 1), sf_flops=20.0, sf_mb=343.0)
    runs = _runs([("sfprompt", 0, 50.0, 19.0, 300.0, 1, 1), ("sfprompt", 1, 50.0, 21.0, 310.0, 1, 1)])
    table = tables.resource_table(acc, runs, reference="fedavg")
    sf = table.data.set_index("method").loc["sfprompt"]
    assert sf.client_gflops_round_pct_of_ref == pytest.approx(20.0) and sf.comm_mb_total_pct_of_ref == pytest.approx(50.0)
    assert sf.client_params_trainable_pct_of_ref == pytest.approx(100 * 2e4 / 86e6)
    assert sf.measured_client_gflops_round == pytest.approx(20.0) and sf.measured_comm_mb_round == pytest.approx(305.0)
    assert math.isnan(table.data.set_index("method").loc["fedavg"].measured_client_gflops_round)
    assert table.display.loc[1, "Client GFLOPs/round"] == "20 (20%)" and "Comm. % of FedAvg" in table.display
    assert "fvcore" in table.caption


def test_ablation_table_reports_the_change_against_full_sfprompt():
    full = _runs([("sfprompt", 0, 60.0, 2.0, 10.0, 1, 1)])
    abl = _runs([("sfprompt", 0, 55.0, 1.0, 5.0, 1, 1)]).assign(variant="no_pruning", role="no_pruning")
    table = tables.ablation_table(abl, full, {"no_pruning": {"train.keep_ratio": 1.0}})
    assert list(table.data.variant) == ["SFPrompt (full)", "no pruning"]
    assert table.data.delta_pp.tolist() == [0.0, -5.0]
    assert table.display.loc[1, "Setting"] == "train.keep_ratio=1.0"


def test_sensitivity_table_orders_values_and_splits():
    full = _runs([("sfprompt", 0, 60.0, 2.0, 10.0, 1, 1)])
    pts = pd.concat([_runs([("sfprompt", 0, acc, 1.0, 1.0, 1, 1)]).assign(role=p, role_value=v)
                     for p, v, acc in [("split", "h2t2", 50.0), ("split", "h0t0", 40.0), ("keep_ratio", 1.0, 61.0),
                                       ("keep_ratio", 0.25, 58.0)]], ignore_index=True)
    table = tables.sensitivity_table(pts, full)
    assert list(zip(table.data.parameter, table.data.value)) == [
        ("keep_ratio", 0.25), ("keep_ratio", 1.0), ("split", "h0t0"), ("split", "h2t2")]


def test_latex_is_booktabs_captioned_and_escaped():
    table = tables.Table("demo", pd.DataFrame(), pd.DataFrame({"a_b": ["x%", "1.0 ± 0.2"], "n": ["1", "2"]}),
                         "Accuracy (%) with 50% kept; fvcore FLOPs", ["note_1"])
    tex = tables.to_latex(table)
    for token in ("\\begin{table}", "\\toprule", "\\midrule", "\\bottomrule", "\\label{tab:demo}",
                  "\\caption{Accuracy (\\%) with 50\\% kept; fvcore FLOPs}", "a\\_b", "x\\%", "$\\pm$", "note\\_1"):
        assert token in tex, token
    md = tables.to_markdown(table)
    assert md.startswith("**Table (demo).** Accuracy") and "| a_b" in md


def test_a_cell_with_a_diverged_seed_says_so_and_the_rest_renders():
    runs = _runs([("fedavg", 0, 80.0, 1, 1, 1, 1), ("fedavg", 1, math.nan, 1, 1, 1, 1), ("fedavg", 2, 84.0, 1, 1, 1, 1),
                  ("sfprompt", 0, 70.0, 1, 1, 1, 1), ("sfprompt", 1, 72.0, 1, 1, 1, 1)]).assign(
        diverged=[False, True, False, False, False])
    table = tables.accuracy_table(runs)
    assert table.display.loc[0, "FedAvg"] == "diverged (1/3 seeds)"
    assert table.display.loc[0, "SFPrompt"] == "71.0 ± 12.7"
    fedavg = table.data.set_index("method").loc["fedavg"]
    assert (fedavg.seeds, fedavg.diverged_seeds, fedavg.accuracy_mean) == (2, 1, 82.0)  # the CSV keeps the rest
    assert tables.paired_table(runs).data.seeds.iloc[0] == 1  # paired on the seeds both finished


# ----------------------------------------------------------------------------------------------------------
# claims


def _claims(acc: pd.DataFrame, runs: pd.DataFrame | None = None) -> tables.Table:
    settings = {(label, split): {"model.head_blocks": int(split[1]), "model.tail_blocks": int(split[3])}
                for label, split in acc[["label", "split"]].drop_duplicates().itertuples(index=False)}
    return claims.claims_table(acc, settings, runs if runs is not None else _runs([]), "fedavg", 0.1)


def test_claims_say_which_split_reproduces_046_percent():
    acc = pd.concat([_accounting("vit_b16", "vit_base_patch16_224", (0, 0), sf_flops=0.445, sf_mb=636.0),
                     _accounting("vit_b16", "vit_base_patch16_224", (1, 1), sf_flops=20.95, sf_mb=693.0)])
    table = _claims(acc)
    local = table.data[table.data.claim == "local_compute"]
    assert list(local.verdict) == ["reproduces", "does not reproduce"]
    assert list(local.ours) == ["0.445%", "20.9%"]
    assert "degenerate" in local.note.iloc[0] and "degenerate" not in local.note.iloc[1]
    assert any("split 0/0: 0.445% (range 0.445%; reproduces)" in n for n in table.notes)
    caveat = table.data[table.data.claim == "caveat"].iloc[0]
    assert caveat.verdict == "degenerate" and "CLS token" in caveat.note


def test_claims_give_the_range_over_readings_and_a_verdict_that_follows_it():
    acc = _accounting("vit_b16", "vit_base_patch16_224", (0, 0), sf_flops=0.445, sf_mb=636.0).assign(
        reading="default")
    extra = acc[acc.method == "sfprompt"].assign(reading="score_once", client_gflops_round=0.22)
    row = _claims(pd.concat([acc, extra])).data.query("claim == 'local_compute'").iloc[0]
    assert row.ours == "0.445%" and row["range"] == "0.22% – 0.445%"
    assert row.verdict == "reproduces under some readings (default)"
    assert "score_once 0.22%" in row.note and "keep_ratio 0.5" in row.setting and "el2n_timing" in row.setting
    allbad = pd.concat([acc.assign(client_gflops_round=acc.client_gflops_round.where(acc.method == "fedavg", 2.0)),
                        extra])
    assert _claims(allbad).data.query("claim == 'local_compute'").iloc[0].verdict == "does not reproduce"


def test_accuracy_claim_follows_the_paired_interval():
    runs = _runs([("fedavg", s, 80.0 + s, 1, 1, 1, 1) for s in range(3)]
                 + [("sfprompt", s, 79.5 + s + 0.1 * s, 1, 1, 1, 1) for s in range(3)]).assign(
        model_backbone="vit_base_patch16_224", resized=False, rounds=50, samples_per_client=500.0)
    acc = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs).data.set_index("claim")
    row = acc.loc["accuracy"]
    assert row.verdict == "reproduced" and "n = 3 seed(s), margin 2 pp" in row.setting
    assert "split 1/1, 50 rounds, 500 samples/client, backbone b (ViT-B/16)" in row.setting
    one_seed = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs[runs.seed == 0]).data
    assert one_seed.set_index("claim").loc["accuracy"].verdict == "inconclusive"


@pytest.mark.parametrize("sf_alt, fl_alt, expected", [
    (79.0, 80.0, "reproduced"),        # SFPrompt at its runner-up still within the margin, FedAvg's runner-up too
    (74.0, 80.0, "inconclusive"),      # SFPrompt's runner-up falls 6 points behind: "not reproduced" there
    (79.5, 86.0, "inconclusive"),      # FedAvg's runner-up is better: the verdict moves with FedAvg's rate
])
def test_accuracy_verdict_stands_only_where_the_runner_up_rates_agree(sf_alt, fl_alt, expected):
    """tuning.recheck: the verdict at the chosen rates is recomputed with either method at its runner-up rate,
    paired by seed, and stands only where every recheck gives the same verdict."""
    chosen = _runs([("fedavg", s, 80.0 + s, 1, 1, 1, 1) for s in range(3)]
                   + [("sfprompt", s, 79.5 + s + 0.1 * s, 1, 1, 1, 1) for s in range(3)])
    alt = _runs([("fedavg", s, fl_alt + s + 0.1 * s, 1, 1, 1, 1) for s in range(3)]
                + [("sfprompt", s, sf_alt + s + 0.2 * s, 1, 1, 1, 1) for s in range(3)]).assign(
        lr_pick="runner_up", train_lr=[0.2, 0.2, 0.2, 0.06, 0.06, 0.06])
    runs = pd.concat([chosen.assign(lr_pick="chosen"), alt], ignore_index=True).assign(
        model_backbone="vit_base_patch16_224", resized=False, rounds=50, samples_per_client=500.0)
    row = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs).data.set_index("claim").loc[
        "accuracy"]
    assert row.verdict == expected and row.ours == "-0.4 ± 0.2 pp"  # "ours" stays the chosen rates' difference
    assert "rechecked at the runner-up rates: SFPrompt at its runner-up lr 0.06" in row.note
    assert "FedAvg at its runner-up lr 0.2" in row.note and row.note.endswith(f"-> {expected}")
    # the recheck runs are not measured runs: without them the verdict is the chosen rates' alone
    plain = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs[runs.lr_pick == "chosen"])
    assert plain.data.set_index("claim").loc["accuracy"].verdict == "reproduced"


def test_a_recheck_run_whose_record_has_no_runner_up_is_labelled_with_the_rate_it_took():
    """Every other grid point diverged: the recheck run trained at the chosen rate (env.json lr_pick says so), and
    the claims note says that instead of calling the chosen rate a runner-up."""
    chosen = _runs([("fedavg", s, 80.0 + s, 1, 1, 1, 1) for s in range(3)]
                   + [("sfprompt", s, 79.5 + s + 0.1 * s, 1, 1, 1, 1) for s in range(3)])
    alt = chosen.assign(lr_pick="runner_up", train_lr=[0.2] * 3 + [0.06] * 3,
                        lr_taken=["runner_up"] * 3 + ["chosen (the record has no runner-up: no other grid point "
                                                      "was scored)"] * 3)
    runs = pd.concat([chosen.assign(lr_pick="chosen"), alt], ignore_index=True).assign(
        model_backbone="vit_base_patch16_224", resized=False, rounds=50, samples_per_client=500.0)
    note = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs).data.set_index("claim").loc[
        "accuracy"].note
    assert "SFPrompt at its chosen lr 0.06 (its record has no runner-up)" in note
    assert "FedAvg at its runner-up lr 0.2" in note and "SFPrompt at its runner-up" not in note


@pytest.mark.parametrize("backbone, resized", [("vit_base_patch16_224", True), ("vit_tiny_patch16_224", False)])
def test_accuracy_claim_on_a_backbone_the_paper_never_used_is_context_only(backbone, resized):
    runs = _runs([("fedavg", s, 80.0 + s, 1, 1, 1, 1) for s in range(3)]
                 + [("sfprompt", s, 79.5 + s + 0.1 * s, 1, 1, 1, 1) for s in range(3)]).assign(
        model_backbone=backbone, resized=resized, rounds=4, backbone_top1=35.04)
    row = _claims(_accounting("b", "vit_tiny_patch16_224", (1, 1), 1.0, 1.0), runs).data.set_index("claim").loc[
        "accuracy"]
    assert row.verdict == "context only (this scale)"
    assert "at this scale the interval reads: reproduced" in row.note and "35.0% top-1 on its source" in row.setting


def test_claims_give_the_traffic_ratio_with_its_break_even():
    acc = _accounting("vit_l16", "vit_large_patch16_224", (0, 0), sf_flops=0.2, sf_mb=0.35 * 686.0, break_even=1431)
    comm = _claims(acc).data.set_index("claim").loc["comm_vit_l"]
    assert comm.ours == "0.35×" and comm.paper == "0.19×" and comm.verdict == "does not reproduce"
    assert "500 samples/client" in comm.note and "1431 samples/client (break-even)" in comm.note


def test_claims_treat_resized_backbones_as_context_and_report_measured_rows():
    acc = _accounting("tiny", "vit_tiny_patch16_224", (1, 1), sf_flops=75.0, sf_mb=2000.0).assign(trained=True)
    settings = {("tiny", "h1t1"): {"model.embed_dim": 32, "model.depth": 4}}
    runs = _runs([("fedavg", 0, 10.0, 1.0, 0.5, 1, 1), ("sfprompt", 0, 12.0, 0.75, 2.0, 1, 1)])
    data = claims.claims_table(acc, settings, runs).data
    assert set(data[data.source == "analytic"].verdict) == {"context only"}
    measured = data.set_index("claim")
    assert measured.loc["local_compute_measured"].ours == "75%"
    assert measured.loc["comm_measured"].ours == "4.00×"
    assert measured.loc["accuracy"].ours == "+2.0 pp"
    assert measured.loc["caveat"].verdict == "not evaluated"


# ----------------------------------------------------------------------------------------------------------
# figures


def test_figures_are_pure_functions_returning_figures():
    runs = _runs([("fedavg", 0, 80.0, 10.0, 5.0, 1, 1), ("sfprompt", 0, 70.0, 0.5, 2.0, 1, 1)])
    curves = pd.concat([runs.assign(round=r, accuracy=50.0 + r, comm_mb_cumulative=10.0 * (r + 1),
                                    client_gflops_cumulative=float(r)) for r in range(3)], ignore_index=True)
    hist = pd.DataFrame([{"dataset": "d", "partition": p, "seed": 0, "client": c, "class": k, "count": c + k}
                         for p in ("iid", "dir") for c in range(3) for k in range(4)])
    points = _runs([("sfprompt", 0, 70.0, 0.5, 2.0, 1, 1)] * 2).assign(role=["keep_ratio", "split"],
                                                                         role_value=[0.5, "h1t1"])
    made = [figures.accuracy_vs_round(curves), figures.accuracy_vs_comm(curves), figures.flops_vs_accuracy(runs),
            figures.partition_heatmaps(hist), figures.sensitivity(points)]
    assert all(isinstance(f, Figure) for f in made)
    assert [len([a for a in f.axes if a.get_visible() and a.get_label() != "<colorbar>"]) for f in made] == [1, 1, 1, 2, 2]
    assert made[1].axes[0].get_xscale() == "log"
    assert isinstance(figures.sensitivity(points.iloc[0:0]), Figure)  # empty input: a labelled placeholder


def test_curve_figures_name_methods_of_identical_accuracies_and_no_others():
    """FedAvg and SFL-V1 score the same accuracy every round (same updates) at different communication: each curve
    figure names that pair in its corner note, as identical accuracies (on the communication axis the curves lie
    apart), and not SFPrompt, whose accuracies differ."""
    runs = _runs([("fedavg", 0, 80.0, 10.0, 5.0, 1, 1), ("sfl_v1", 0, 80.0, 10.0, 9.0, 1, 1),
                  ("sfprompt", 0, 70.0, 0.5, 2.0, 1, 1)])
    curves = pd.concat([runs.assign(round=r, accuracy=np.where(runs.method == "sfprompt", 40.0, 50.0) + r,
                                    comm_mb_cumulative=runs.comm_mb_round * (r + 1)) for r in range(3)],
                       ignore_index=True)
    for fig in (figures.accuracy_vs_round(curves), figures.accuracy_vs_comm(curves)):
        notes = [t.get_text() for t in fig.axes[0].texts]
        assert notes == ["identical accuracies: FedAvg = SFL-V1"], notes

@pytest.mark.parametrize("n,shape", [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (6, (2, 3)),
                                     (7, (3, 3)), (16, (6, 3))])
def test_panel_grids_are_sized_to_their_panels(n, shape):
    """Exactly ``n`` axes, none hidden, in the fewest rows of at most three columns and then the fewest columns:
    four panels are 2 × 2, never 2 × 3 with two empty panels."""
    fig, axes = figures._grid(n)
    assert len(axes) == len(fig.axes) == n and all(ax.get_visible() for ax in fig.axes)
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in axes} == {shape}


def test_curve_figures_have_one_legend_below_and_no_empty_panel():
    runs = _runs([("fedavg", 0, 80.0, 10.0, 5.0, 1, 1), ("sfprompt", 0, 70.0, 0.5, 2.0, 1, 1)])
    cells = pd.concat([runs.assign(dataset=d, partition=p) for d in ("d1", "d2") for p in ("iid", "dir")])
    curves = pd.concat([cells.assign(round=r, accuracy=50.0 + r, comm_mb_cumulative=10.0 * (r + 1))
                        for r in range(4)], ignore_index=True)
    fig = figures.accuracy_vs_round(curves)
    assert len(fig.axes) == 4 and all(ax.get_legend() is None for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["FedAvg", "SFPrompt"]
    assert all(len(ax.lines[0].get_xdata()) == 4 for ax in fig.axes)  # a point every round


def test_partition_heatmaps_name_the_classes_where_the_data_have_names():
    hist = pd.DataFrame([{"dataset": "d", "partition": "iid", "seed": 0, "client": c, "class": k,
                          "class_name": ["cat", "dog", "ship"][k], "count": c + k} for c in range(2) for k in range(3)])
    ax = figures.partition_heatmaps(hist).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "ship"]
    ax = figures.partition_heatmaps(hist.drop(columns="class_name")).axes[0]  # no names: label ids
    assert [t.get_text() for t in ax.get_xticklabels()] != ["cat", "dog", "ship"] and ax.get_xlabel() == "class"


# ----------------------------------------------------------------------------------------------------------
# backbone strength, from a hand-made results folder (runs, their roles in grid.json, checkpoint cards)


def _write_run(root: Path, run: dict, accuracy: float) -> None:
    """A finished run folder: final test accuracy (fraction) and just enough ledger for the report's loader."""
    folder = root / run["dir"]
    folder.mkdir(parents=True)
    stamp = {"config_hash": "h" + run["variant"], "git_revision": "r"}
    pd.DataFrame([{"round": 0, "client": -1, "split": "test", "metric": "accuracy", "value": accuracy, **stamp},
                  {"round": 0, "client": -1, "split": "comm", "metric": "cumulative_bytes", "value": 8.0, **stamp}]
                 ).to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame([{"round": 0, "client": 0, "party": "client", "total": 1e9}]).to_csv(folder / "flops.csv", index=False)
    pd.DataFrame([{"round": 0, "client": 0, "direction": "up", "bytes": 8}]).to_csv(folder / "comm.csv", index=False)


def _strength_results(root: Path) -> dict[tuple[str, str], list[float]]:
    """Runs of two methods at checkpoints tiny@30 and tiny (the main runs, which also play the method role),
    three seeds, plus a main-grid run outside the strength section; returns the accuracies per (method, label)."""
    accs = {("fedavg", "tiny@30"): [40.0, 41.0, 45.0], ("fedavg", "tiny"): [60.0, 62.0, 64.0],
            ("sfprompt", "tiny@30"): [30.0, 36.0, 33.0], ("sfprompt", "tiny"): [50.0, 52.0, 57.0]}
    runs = []
    for (method, label), values in accs.items():
        for seed, acc in enumerate(values):
            full = label == "tiny"
            variant = method if full else f"{method}@30"
            roles = ([{"kind": "method", "name": method, "value": None}] if full else []) + [
                {"kind": "strength", "name": label, "value": 1.0 if full else 0.3}]
            runs.append({"backbone": "tiny", "dataset": "digits", "partition": "iid", "variant": variant,
                         "seed": seed, "method": method, "dir": f"runs/tiny/digits/iid/{variant}/seed{seed}",
                         "partition_file": f"partitions/digits/iid/seed{seed}.json", "roles": roles, "settings": {}})
            _write_run(root, runs[-1], acc / 100)
    runs.append({**runs[0], "variant": "fedprompt", "method": "fedprompt", "dir": "runs/tiny/digits/iid/fedprompt/seed0",
                 "roles": [{"kind": "method", "name": "fedprompt", "value": None}]})
    _write_run(root, runs[-1], 0.99)
    (root / "backbones").mkdir()
    for label, fraction, acc in (("tiny@30", 0.3, 0.25), ("tiny", 1.0, 0.8)):
        (root / "backbones" / f"{label}.json").write_text(json.dumps(
            {"source_dataset": "mnist5k", "test_accuracy": acc, "epoch": 3 * fraction, "fraction": fraction}))
    grid = {"runs": runs, "accounting": [], "tables": ["strength"], "figures": ["strength"],
            "strength": [{"backbone": "tiny", "fraction": f, "label": lab, "card": f"backbones/{lab}.json"}
                         for lab, f in (("tiny@30", 0.3), ("tiny", 1.0))]}
    (root / "grid.json").write_text(json.dumps(grid))
    return accs


def test_strength_table_averages_each_checkpoints_runs_beside_its_card(tmp_path):
    from benchmark.report.build import render_figure, render_table
    from benchmark.report.load import load_results
    from benchmark.stats import mean_ci

    accs = _strength_results(tmp_path)
    res = load_results(tmp_path)
    table = render_table(res, "strength")
    data = table.data.set_index(["method", "checkpoint"])
    assert sorted(data.index) == sorted(accs)  # the main-grid run outside the section is not a strength point
    source = {"tiny@30": 25.0, "tiny": 80.0}
    for (method, label), values in accs.items():
        row = data.loc[(method, label)]
        mean, half, n = mean_ci(values)
        assert row.accuracy_mean == pytest.approx(mean) and row.accuracy_ci95 == pytest.approx(half) and row.seeds == n
        assert row.source_accuracy == pytest.approx(source[label]) and row.fraction == (0.3 if "@" in label else 1.0)
    assert list(table.data.method) == ["fedavg", "fedavg", "sfprompt", "sfprompt"]  # method order, then strength
    assert list(table.display["Pre-training (%)"]) == ["30", "100", "30", "100"]
    assert table.display.iloc[0]["Accuracy (%)"] == f"{mean_ci(accs[('fedavg', 'tiny@30')])[0]:.1f} ± " \
        f"{mean_ci(accs[('fedavg', 'tiny@30')])[1]:.1f}"
    assert "Backbone top-1 on mnist5k (%)" in table.display and "95%" in table.caption
    fig = render_figure(res, "strength")
    ax = fig.axes[0]
    assert sorted(ax.get_xticks()) == pytest.approx([25.0, 80.0])  # strength = the cards' accuracy
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["FedAvg", "SFPrompt"]  # one legend, below


def test_strength_figure_names_methods_whose_points_coincide():
    from benchmark.report.strength import strength_figure

    pts = pd.concat([_runs([(m, s, 50.0 + s, 1, 1, 1, 1) for m in ("fedavg", "sfl_v1") for s in (0, 1)]).assign(
        role=label, role_value=f) for label, f in (("b@10", 0.1), ("b", 1.0))], ignore_index=True)
    cards = pd.DataFrame({"label": ["b@10", "b"], "backbone": "b", "fraction": [0.1, 1.0], "source_dataset": "c",
                          "source_accuracy": [10.0, 30.0], "epoch": [0.3, 3.0], "card": ""})
    fig = strength_figure(pts, cards)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("FedAvg = SFL-V1" in t for t in texts)
    lines = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}  # errorbar: (data line, caps, bars)
    assert set(lines) == {"FedAvg", "SFL-V1"}
    assert lines["FedAvg"].get_marker() != lines["SFL-V1"].get_marker()
    assert lines["FedAvg"].get_linestyle() != lines["SFL-V1"].get_linestyle()
    assert lines["FedAvg"].get_markersize() > lines["SFL-V1"].get_markersize()  # hollow, shrinking: both visible


# ----------------------------------------------------------------------------------------------------------
# the rendered smoke outputs


def test_every_table_has_three_formats_and_a_caption_with_units(smoke_results):
    for name in ("accuracy", "paired", "resources", "ablation", "claims", "sensitivity", "privacy", "strength"):
        csv = pd.read_csv(smoke_results / "tables" / f"{name}.csv")
        assert len(csv), name
        tex = (smoke_results / "tables" / f"{name}.tex").read_text()
        md = (smoke_results / "tables" / f"{name}.md").read_text()
        assert "\\toprule" in tex and f"\\label{{tab:{name}}}" in tex and "\\caption{" in tex
        assert "fvcore" in md and "1 FLOP = 1 multiply-add" in tex


def test_smoke_accuracy_has_ci_and_n_over_two_seeds_with_reference_rows(smoke_results):
    acc = pd.read_csv(smoke_results / "tables" / "accuracy.csv")
    assert {"accuracy_mean", "accuracy_ci95", "seeds"} <= set(acc.columns)
    assert (acc.seeds == 2).all() and acc.accuracy_ci95.notna().all()
    assert {"central_ft", "central_prompt", "linear_probe"} <= set(acc.method)
    md = (smoke_results / "tables" / "accuracy.md").read_text()
    assert "Centralized FT" in md and "Linear probe" in md and "95% confidence interval" in md
    paired = pd.read_csv(smoke_results / "tables" / "paired.csv")
    assert (paired.seeds == 2).all() and paired.diff_ci95.notna().all() and "fedavg" not in set(paired.method)
    claims = pd.read_csv(smoke_results / "tables" / "claims.csv").set_index("claim")
    accuracy = claims.loc[["accuracy"]]  # the smoke's tiny ViT is no paper backbone: context, with the reading kept
    assert set(accuracy.verdict) == {"context only (this scale)"}
    assert accuracy.note.str.contains("at this scale the interval reads: (?:reproduced|not reproduced|inconclusive)").all()


def test_smoke_claims_say_the_degenerate_setting_and_break_even(smoke_results):
    data = pd.read_csv(smoke_results / "tables" / "claims.csv")
    assert data.set_index("claim").loc["caveat", "verdict"] == "degenerate"
    assert data.note.str.contains("break-even").any()
    assert set(data[data.claim == "local_compute"].setting.str[:9]) == {"split 0/0", "split 1/1"}


def test_manifest_maps_every_output_to_existing_runs_with_hashes(smoke_results):
    manifest = json.loads((smoke_results / "manifest.json").read_text())
    outputs = manifest["outputs"]
    expected = {f"tables/{t}.{x}" for t in ("accuracy", "paired", "resources", "ablation", "claims", "sensitivity",
                                             "time_to_target", "system_rounds", "crossover", "privacy", "tuning", "strength")
                for x in ("csv", "md", "tex")}
    expected |= {f"figures/{f}.{x}" for f in ("accuracy_vs_round", "accuracy_vs_comm", "flops_vs_accuracy",
                                              "partitions", "sensitivity", "accuracy_vs_time",
                                              "privacy_reconstructions", "privacy_frontier", "strength")
                 for x in ("pdf", "png")}
    assert set(outputs) == expected and all((smoke_results / p).is_file() for p in outputs)
    assert len(outputs["tables/accuracy.csv"]["runs"]) == 20 + 6  # 5 methods x 2 partitions x 2 seeds + references
    assert {r["variant"] for r in outputs["tables/accuracy.csv"]["runs"] if "pooled" in r["dir"]} == {
        "central_ft", "central_prompt", "linear_probe"}
    assert {r["variant"] for r in outputs["tables/ablation.csv"]["runs"]} == {
        "sfprompt", "no_pruning", "no_local_loss", "no_prompts", "no_server_grad"}
    assert {f["kind"] for f in outputs["tables/claims.csv"]["files"]} == {"accounting", "privacy_file",
                                                                           "privacy_examples"}
    assert {f["kind"] for f in outputs["tables/crossover.csv"]["files"]} == {"system"}
    tuning = outputs["tables/tuning.csv"]["files"]  # 8 searches (5 methods + 3 pooled references) x 2 grid points
    assert [f["kind"] for f in tuning].count("tuning") == 8 and [f["kind"] for f in tuning].count("tuning_run") == 16
    assert len(outputs["tables/time_to_target.csv"]["runs"]) == 20
    strength = outputs["tables/strength.csv"]  # 3 methods x 2 seeds at tiny@30, and their main runs (100%)
    assert sorted(r["variant"] for r in strength["runs"]) == sorted(
        [f"{m}{s}" for m in ("fedavg", "fedprompt", "sfprompt") for s in ("", "@30")] * 2)
    assert sorted(f["path"] for f in strength["files"]) == ["backbones/tiny.json", "backbones/tiny@30.json"]
    assert len(outputs["figures/partitions.png"]["files"]) == 4  # 2 partitions x 2 seeds (not the pooled one)
    for entry in outputs.values():
        for run in entry["runs"]:
            metrics = pd.read_csv(smoke_results / run["dir"] / "metrics.csv", nrows=1, dtype={"config_hash": str})
            assert metrics.config_hash.iloc[0] == run["config_hash"]


def test_smoke_strength_table_pairs_each_checkpoint_with_its_card(smoke_results):
    data = pd.read_csv(smoke_results / "tables" / "strength.csv")
    assert sorted(zip(data.method, data.checkpoint)) == sorted(
        (m, c) for m in ("fedavg", "fedprompt", "sfprompt") for c in ("tiny", "tiny@30"))
    assert (data.seeds == 2).all() and data.accuracy_ci95.notna().all()
    for label, grp in data.groupby("checkpoint"):
        card = json.loads((smoke_results / "backbones" / f"{label}.json").read_text())
        assert grp.source_accuracy.tolist() == pytest.approx([100 * card["test_accuracy"]] * len(grp))
    assert (smoke_results / "figures" / "strength.png").is_file()


def test_snakemake_report_embeds_the_figures_with_captions(smoke_results, tmp_path):
    work, results = smoke_workflow()
    html = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                    str(work), "--configfile", str(CONFIGS["smoke"]), "--config", f"results={results}",
                    "--report", str(html)], check=True, capture_output=True)
    text = html.read_text()
    assert "sensitivity.png" in text and "cumulative communication" in text and "Accuracy table" in text


def test_smoke_figures_have_a_point_every_round_and_one_readable_time_figure(smoke_results):
    """The smoke runs evaluate every round; accuracy_vs_time draws one cell with a panel per client/link pair
    (not a panel per cell and pair), each method's curve a point per round; partitions name the classes."""
    import yaml

    from benchmark.report.build import render_figure
    from benchmark.report.load import load_results

    res = load_results(smoke_results)
    rounds = yaml.safe_load(CONFIGS["smoke"].read_text())["run"]["train"]["rounds"]
    pairs = yaml.safe_load(CONFIGS["smoke"].read_text())["system"]["pairs"]
    per_round = render_figure(res, "accuracy_vs_round")
    assert all(len(line.get_xdata()) == rounds for ax in per_round.axes for line in ax.lines)
    timed = render_figure(res, "accuracy_vs_time")
    assert [ax.get_title() for ax in timed.axes] == [f"client/link: {p}" for p in pairs]
    assert all(len(line.get_xdata()) == rounds for ax in timed.axes for line in ax.lines)
    assert len(timed.legends) == 1 and "digits · dir0.5" in timed._suptitle.get_text()
    heat = render_figure(res, "partitions").axes[0]
    assert [t.get_text() for t in heat.get_xticklabels()] == [str(d) for d in range(10)]  # digits' ClassLabel


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a virtual-time budget, so the report's scripts finish before the page is read."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", "--virtual-time-budget=20000", "--window-size=1280,900", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's as root)")
def test_snakemake_report_renders_in_a_real_browser(smoke_results, tmp_path):
    """``snakemake --report`` opened in headless Chromium: its app renders (the workflow description and the
    Figures and Tables categories in the page, the loading screen gone), every figure's caption is in the DOM,
    and a screenshot of the page is not blank."""
    work, results = smoke_workflow()
    html = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                    str(work), "--configfile", str(CONFIGS["smoke"]), "--config", f"results={results}",
                    "--report", str(html)], check=True, capture_output=True)
    dom = _chromium("--dump-dom", html.as_uri()).stdout
    app = dom[dom.index('<div id="app">'):dom.index('<script id="workflow-desc">') if '<script id="workflow-desc">'
              in dom else len(dom)]
    rendered = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>|<style.*?</style>", " ", app, flags=re.S))
    assert "FedAvg full fine-tuning" in rendered  # workflow/report/workflow.rst, rendered by the app
    assert "Figures" in rendered and "Tables" in rendered
    for caption in sorted((ROOT / "workflow" / "report").glob("figure_*.rst")):
        words = " ".join(caption.read_text().split()[:6])
        assert html_lib.escape(words, quote=False) in dom or words in dom, caption.name
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", html.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # not blank: text and graphics on the page


def test_report_is_reproducible(smoke_results, tmp_path):
    """Re-rendering the tables from the same runs gives the same bytes."""
    import shutil

    from benchmark.report.build import build_report

    copy = tmp_path / "results"
    # weights are not read; the backbone cards are (the strength table shows their accuracy)
    shutil.copytree(smoke_results, copy, ignore=shutil.ignore_patterns("cache", "logs", "*.safetensors"))
    build_report(copy, only="tables")
    for f in (smoke_results / "tables").iterdir():
        assert (copy / "tables" / f.name).read_bytes() == f.read_bytes(), f.name


# ----------------------------------------------------------------------------------------------------------
# job costs (Snakemake benchmark files)

_BENCH_HEAD = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench_file(path: Path, wall: float, cpu: float, rss: float, end: float) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_BENCH_HEAD + f"{wall}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    os.utime(path, (end, end))


def test_job_costs_sum_per_rule_and_span_the_jobs(tmp_path):
    from benchmark.report.costs import format_costs, job_costs

    _bench_file(tmp_path / "logs/train/b/d/p/fedavg/seed0.benchmark.tsv", 60, 55, 900, 1000)
    _bench_file(tmp_path / "logs/train/b/d/p/sfprompt/seed0.benchmark.tsv", 40, 38, 950, 1030)
    _bench_file(tmp_path / "logs/pretrain/b.benchmark.tsv", 100, 190, 800, 900)
    _bench_file(tmp_path / "cache/logs/d-32px.benchmark.tsv", 10, 9, 700, 800)
    table, span = job_costs(tmp_path)
    rows = table.set_index("rule")
    assert list(table.rule) == ["pretrain", "train", "cache", "all"]  # by CPU time, total last
    assert rows.loc["train"].tolist() == [2, 100.0, 93.0, 60.0, 950.0, 0]
    assert rows.loc["all"].tolist() == [4, 210.0, 292.0, 100.0, 950.0, 0]
    assert span == 1030 - (800 - 10)  # first start (cache: 790) to last end (1030)
    text = format_costs(table, span)
    assert "span (first job start to last job end): 4.0 min" in text and "CPU time at least 4.9 min" in text


def test_job_costs_keep_an_unsampled_job_as_nan_and_sum_the_rest(tmp_path):
    """A job shorter than Snakemake's first poll has cpu_time 0 or NA: read, never an error, skipped in sums."""
    from benchmark.report.costs import job_costs, read_job_files

    _bench_file(tmp_path / "logs/train/b/d/p/fedavg/seed0.benchmark.tsv", 60, 55, 900, 1000)
    _bench_file(tmp_path / "logs/train/b/d/p/sfprompt/seed0.benchmark.tsv", 0.4, "NA", "NA", 1001)
    _bench_file(tmp_path / "logs/train/b/d/p/sfl_v1/seed0.benchmark.tsv", 0.6, 0, 0, 1002)
    jobs = read_job_files(tmp_path)
    assert jobs.cpu_s.isna().sum() == 1 and jobs.max_rss_mb.isna().sum() == 1
    rows = job_costs(tmp_path)[0].set_index("rule")
    assert rows.loc["train"].tolist() == [3, 61.0, 55.0, 60.0, 900.0, 0]


def test_job_costs_take_the_fork_servers_exact_usage_for_the_jobs_it_ran(tmp_path):
    """A job in the fork server's child: Snakemake sampled only the waiting process, the server's usage file has
    the child's CPU and memory (matched by the job's log, also from a moved results folder; the last run wins)."""
    from benchmark.prefork import USAGE_COLUMNS, USAGE_FILE
    from benchmark.report.costs import format_costs, job_costs, read_job_files

    _bench_file(tmp_path / "logs/train/b/d/p/fedavg/seed0.benchmark.tsv", 60, 0.2, 40, 1000)
    _bench_file(tmp_path / "logs/train/b/d/p/sfprompt/seed0.benchmark.tsv", 40, "NA", "NA", 1030)
    _bench_file(tmp_path / "logs/pretrain/b.benchmark.tsv", 100, 190, 800, 900)  # ran in its own process
    rows = ["/elsewhere/results/logs/train/b/d/p/fedavg/seed0.log\ttrain\t10\t59\t30.0\t700\t0",  # an earlier run
            "/elsewhere/results/logs/train/b/d/p/fedavg/seed0.log\ttrain\t20\t59\t57.5\t990.5\t0",
            "/elsewhere/results/logs/train/b/d/p/sfprompt/seed0.log\ttrain\t30\t39\t38.0\t950\t0",
            "\ttrain\t40\t1\t9.0\t900\t0",                     # a job whose output was not a file: unmatched
            "/elsewhere/results/logs/report/x.log\treport\t50\t1\t9.0\t900\t0"]  # no benchmark file: unmatched
    (tmp_path / "logs" / USAGE_FILE).write_text("\t".join(USAGE_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    jobs = read_job_files(tmp_path).set_index("job")
    assert jobs.loc["logs/train/b/d/p/fedavg/seed0", ["cpu_s", "max_rss_mb", "exact"]].tolist() == [57.7, 990.5, True]
    assert jobs.loc["logs/train/b/d/p/sfprompt/seed0", ["cpu_s", "max_rss_mb", "exact"]].tolist() == [38.0, 950.0,
                                                                                                      True]
    assert jobs.loc["logs/pretrain/b", ["cpu_s", "exact"]].tolist() == [190.0, False]
    table, span = job_costs(tmp_path)
    assert table.set_index("rule").loc["all"].tolist() == [3, 200.0, 285.7, 100.0, 990.5, 2]
    assert "exact for the 2 jobs the fork server ran, sampled by Snakemake for the other 1" in format_costs(table,
                                                                                                           span)


def test_job_costs_name_a_missing_or_foreign_file(tmp_path):
    from benchmark.errors import BenchmarkError
    from benchmark.report.costs import job_costs

    with pytest.raises(BenchmarkError, match="no job timing files"):
        job_costs(tmp_path)
    bad = tmp_path / "logs" / "train" / "x.benchmark.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(BenchmarkError, match="x.benchmark.tsv.*not a Snakemake benchmark file"):
        job_costs(tmp_path)


def test_perf_summary_formats_each_group_from_its_extra_info(tmp_path):
    from benchmark.perf import summarize

    bench = {"benchmarks": [
        {"name": "test_matmul_rate", "group": "roof", "extra_info": {"gmac_per_s": 45.94},
         "stats": {"median": 0.2, "rounds": 7}},
        {"name": "test_memory[x]", "group": "memory", "stats": {"median": 1.0, "rounds": 1},
         "extra_info": {"peak_rss_mb_10": 1162.4, "peak_rss_mb_100": 1096.0, "ratio": 0.9443}},
        {"name": "test_other", "group": None, "extra_info": {}, "stats": {"median": 3.14159, "rounds": 2}},
    ]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench))
    assert summarize(path).splitlines()[2:] == [
        "| roof | matmul_rate | 45.9 G multiply-adds/s | 7 |",
        "| memory | memory[x] | peak RSS 1162 MB (10 clients) vs 1096 MB (100): x0.944 | 1 |",
        "|  | other | 3.14 s | 2 |",
    ]


def test_every_workflow_output_has_exactly_one_registered_renderer():
    import benchmark.report.build  # noqa: F401  (imports every renderer module, which registers its outputs)
    from benchmark.report.outputs import OUTPUTS
    from benchmark.workflow.names import FIGURES, TABLES

    assert OUTPUTS["table"].names() == sorted(TABLES)
    assert OUTPUTS["figure"].names() == sorted(FIGURES)


def test_curve_figures_say_when_interim_points_score_fewer_test_images():
    from benchmark.report.figures import interim_note

    curves = pd.DataFrame({"eval_samples": [2000.0, 10000.0, 2000.0, 10000.0]})
    assert interim_note(curves) == "; points before the last round: 2,000 of the 10,000 test images"
    assert interim_note(curves.assign(eval_samples=10000.0)) == ""  # every point on the whole split
    assert interim_note(curves.drop(columns="eval_samples")) == ""  # runs from before the row existed


def test_flops_figure_draws_methods_of_one_client_cost_apart_and_says_so():
    """SFL-V1 and SFL-V2 have the same client cost: drawn at one x, one marker hid the other. Each next method at
    a cost is drawn DODGE to the right of the last; a method alone at its cost stays at its exact cost."""
    from benchmark.report.figures import DODGE, flops_vs_accuracy

    cell = {"backbone": "b", "dataset": "d", "partition": "iid"}
    runs = pd.DataFrame([{**cell, "method": m, "seed": s, "final_accuracy": 40.0 + s, "client_gflops_round": g}
                         for m, g in (("sfl_v1", 1.2), ("sfl_v2", 1.2), ("sfprompt", 5.3)) for s in (0, 1)])
    fig = flops_vs_accuracy(runs)
    ax = fig.axes[0]
    xs = {c.get_label(): float(c.lines[0].get_xdata()[0]) for c in ax.containers}
    assert xs["SFL-V1"] == pytest.approx(1.2) and xs["SFPrompt"] == pytest.approx(5.3)
    assert xs["SFL-V2"] == pytest.approx(1.2 * DODGE)
    assert "apart" in fig.get_suptitle()
    alone = flops_vs_accuracy(runs[runs.method != "sfl_v2"])
    assert "apart" not in alone.get_suptitle()
