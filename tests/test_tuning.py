"""Learning rates by one procedure (benchmark/tuning.py): the validation split, the choice, and the workflow
passing the choice to every run. The end-to-end check reads the smoke profile's results (tests/test_workflow.py's
session fixture)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.config import RunConfig
from benchmark.data.sampling import validation_split
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.tuning import choose, gather, pick_lr, read_choice
from benchmark.workflow.grid import load_workflow
from benchmark.workflow.names import Role
from tests.test_data import offline, write_mirror  # noqa: F401 (autouse fixture: no hub, tmp HF cache)
from tests.test_workflow import CONFIGS, smoke_results  # noqa: F401 (session fixture)


# ----------------------------------------------------------------------------------------------------------
# the choice


def _point_run(folder: Path, lr: float, accs: list[float] | None, split: str = "validation") -> Path:
    """A finished tuning run as the train verb writes it: config.resolved.yaml and metrics.csv (final-round
    accuracy last; ``accs`` None: diverged)."""
    folder.mkdir(parents=True)
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(RunConfig().replace(**{"train.lr": lr}).to_dict()))
    if accs is None:
        rows = [(-1, -1, split, "diverged", 1.0)]
    else:
        rows = [(r, -1, split, "accuracy", a) for r, a in enumerate(accs)] + [(len(accs) - 1, 0, "client_train",
                                                                                "accuracy", 0.99)]
    pd.DataFrame(rows, columns=["round", "client", "split", "metric", "value"]).to_csv(folder / "metrics.csv",
                                                                                       index=False)
    return folder


def _spec(tmp_path: Path, grid: dict[float, list[float] | None], split: str = "validation") -> dict:
    points = []
    for mult, accs in grid.items():
        lr = round(0.02 * mult, 12)
        run = _point_run(tmp_path / f"x{mult:g}", lr, accs, split)
        points.append({"multiplier": mult, "lr": lr, "run_dir": str(run)})
    return {"backbone": "b", "dataset": "d", "method": "fedavg", "partition": "iid", "seed": 0,
            "validation_fraction": 0.2, "base_lr": 0.02, "points": points}


def test_chosen_value_is_the_argmax_of_the_final_round_validation_accuracies(tmp_path):
    # the best *final-round* accuracy wins (x1's peak in round 0 does not count), whatever the grid order
    doc = gather(_spec(tmp_path, {3.0: [0.30, 0.42], 0.3: [0.20, 0.35], 1.0: [0.60, 0.40]}))
    scores = {p["multiplier"]: p["val_accuracy"] for p in doc["points"]}
    assert scores == {3.0: 0.42, 0.3: 0.35, 1.0: 0.40}
    assert doc["chosen_multiplier"] == max(scores, key=scores.get) == 3.0
    assert doc["chosen_lr"] == 0.06 and doc["chosen_val_accuracy"] == 0.42
    assert doc["grid"] == [3.0, 0.3, 1.0] and doc["seeds"] == [0] and doc["validation_fraction"] == 0.2
    assert doc["runner_up_multiplier"] == 1.0  # the rate the choice could have gone to
    assert not doc["all_diverged"]


def test_the_tuning_table_flags_a_choice_on_the_grids_edge(tmp_path):
    from benchmark.report.tuning import tuning_table

    edge = gather(_spec(tmp_path / "a", {0.3: [0.2], 1.0: [0.3], 3.0: [0.4]}))
    inside = {**gather(_spec(tmp_path / "b", {0.3: [0.2], 1.0: [0.5], 3.0: [0.4]})), "method": "sfprompt"}
    low = {**gather(_spec(tmp_path / "c", {0.3: [0.6], 1.0: [0.5], 3.0: [0.4]})), "dataset": "e"}
    notes = " ".join(tuning_table([edge, inside, low]).notes)
    assert "b/d/FedAvg (×3, the largest)" in notes and "b/e/FedAvg (×0.3, the smallest)" in notes
    assert "SFPrompt" not in notes
    assert "edge" not in " ".join(tuning_table([inside]).notes)


def test_ties_go_to_the_smaller_lr_and_a_diverged_point_loses():
    assert choose([0.06, 0.006, 0.02], [0.5, 0.5, 0.4]) == 1
    assert choose([0.006, 0.02, 0.06], [0.1, 0.3, None]) == 1
    assert choose([0.006, 0.02, 0.06], [None, None, None]) == 0  # all diverged: the smallest lr
    assert choose([0.006, 0.02], [float("nan"), 0.0]) == 1


@pytest.mark.parametrize("seed", range(20))
def test_the_near_tie_rule_picks_the_same_rate_when_scores_move_by_float_rounding(seed):
    """Scores as another CPU's rounding would leave them (each moved by up to 1e-6): the argmax flips between
    near-equal points, the near-tie rule (smallest lr within one SE of the best) does not."""
    lrs, scores, se = [0.006, 0.02, 0.06, 0.2], [0.41, 0.5, 0.5 + 2e-7, 0.47], 0.035
    rng = np.random.default_rng(seed)
    moved = [s + rng.uniform(-1e-6, 1e-6) for s in scores]
    assert choose(lrs, moved, tolerance=se) == choose(lrs, scores, tolerance=se) == 1
    assert choose(lrs, scores, tolerance=0.10) == 0  # 0.41 lies within 0.10 of the best: the smallest lr wins


def test_near_tie_averages_the_tuning_seeds_and_states_its_standard_error(tmp_path):
    """Two tuning seeds: a point's score is its mean; the SE is binomial over the validation images and seeds;
    with near_tie 1 the smaller lr within one SE of the best is chosen and the argmax is the runner-up."""
    points = []
    for mult, accs in {1.0: (0.50, 0.54), 3.0: (0.56, 0.52), 10.0: (0.30, None)}.items():
        lr = round(0.02 * mult, 12)
        for seed, acc in zip((100, 101), accs):
            run = _point_run(tmp_path / f"x{mult:g}" / f"seed{seed}", lr, None if acc is None else [acc])
            (run / "env.json").write_text(json.dumps({"eval_images": 200}))
            points.append({"multiplier": mult, "lr": lr, "seed": seed, "run_dir": str(run)})
    spec = {"backbone": "b", "dataset": "d", "method": "fedavg", "partition": "iid", "seeds": [100, 101],
            "validation_fraction": 0.2, "base_lr": 0.02, "near_tie": 1.0, "points": points}
    doc = gather(spec)
    scores = {p["multiplier"]: p["val_accuracy"] for p in doc["points"]}
    assert scores[1.0] == pytest.approx(0.52) and scores[3.0] == pytest.approx(0.54) and scores[10.0] is None
    assert doc["standard_error"] == pytest.approx(math.sqrt(0.54 * 0.46 / 200) / math.sqrt(2))  # 0.0249
    assert doc["best_lr"] == 0.06 and doc["chosen_lr"] == 0.02 and doc["runner_up_lr"] == 0.06
    assert gather({**spec, "near_tie": 0.0})["chosen_lr"] == 0.06  # the plain argmax


def test_tuning_seeds_must_be_disjoint_from_the_final_seeds():
    doc = yaml.safe_load(CONFIGS["smoke"].read_text())
    doc["tuning"]["seeds"] = [1, 100]
    with pytest.raises(ConfigError, match=r"'tuning.seeds': \[1\] are final seeds too"):
        load_workflow(doc)


def test_a_diverged_point_is_recorded_and_a_test_split_run_is_refused(tmp_path):
    doc = gather(_spec(tmp_path / "a", {0.3: [0.3], 3.0: None}))
    assert [p["diverged"] for p in doc["points"]] == [False, True] and doc["chosen_multiplier"] == 0.3
    with pytest.raises(BenchmarkError, match="no validation accuracy"):
        gather(_spec(tmp_path / "b", {0.3: [0.3], 3.0: [0.5]}, split="test"))


def test_a_stale_grid_point_and_a_record_of_another_method_are_errors(tmp_path):
    spec = _spec(tmp_path, {0.3: [0.3], 1.0: [0.4]})
    spec["points"][0]["lr"] = 0.5
    with pytest.raises(BenchmarkError, match="trained with train.lr"):
        gather(spec)
    record = tmp_path / "fedavg.json"
    record.write_text(json.dumps({"chosen_lr": 0.02, "method": "fedavg", "dataset": "d"}))
    assert read_choice(record, "fedavg", "d")["chosen_lr"] == 0.02
    with pytest.raises(ConfigError, match="tuned for method 'fedavg'"):
        read_choice(record, "sfprompt", "d")


# ----------------------------------------------------------------------------------------------------------
# the validation split


def test_validation_split_is_stratified_disjoint_complete_and_seeded():
    labels = np.repeat(np.arange(5), [400, 300, 200, 80, 20])
    train, val = validation_split(labels, 0.2, seed=3)
    assert len(val) == 200 and np.bincount(labels[val], minlength=5).tolist() == [80, 60, 40, 16, 4]
    assert not set(train) & set(val) and sorted(np.concatenate([train, val])) == list(range(1000))
    assert np.array_equal(val, validation_split(labels, 0.2, seed=3)[1])
    assert not np.array_equal(val, validation_split(labels, 0.2, seed=4)[1])


def test_the_run_holds_validation_out_of_the_clients_data_and_never_reads_the_test_split(tmp_path):
    """By content: every image of the synthetic mirror is distinct, so image bytes identify their row."""
    from benchmark.run import load_federated_data

    images = write_mirror(tmp_path / "mirror", n=60, size=8)  # 6 per class, train and test
    def key(img) -> bytes:  # HWC uint8 as cached (CHW) -> bytes
        return np.ascontiguousarray(np.asarray(img)).tobytes()
    train_rows = {key(i) for i in images["train"]}
    test_rows = {key(i) for i in images["test"]}
    base = {"data.dataset": "cifar10", "data.data_root": str(tmp_path / "mirror"),
            "data.cache_dir": str(tmp_path / "cache"), "data.max_train_samples": 50, "data.validation_fraction": 0.2,
            "model.img_size": 8, "model.patch_size": 4, "model.embed_dim": 16, "model.depth": 2,
            "model.num_heads": 2, "partition.num_clients": 4, "seed": 1}
    cfg = RunConfig().replace(**base)
    data, part = load_federated_data(cfg)
    as_rows = lambda t: [key(x.permute(1, 2, 0).numpy()) for x in t]  # noqa: E731
    val = as_rows(data.test_images)
    clients = [set(as_rows(data.train_images[c])) for c in part.client_indices]
    assert data.eval_split == "validation" and len(val) == 10 and len(data.train_labels) == 40
    assert set(val) <= train_rows and not set(val) & test_rows  # carved from training data, never the test split
    assert not set(val) & set().union(*clients)  # no client holds a validation image
    assert set().union(*clients) | set(val) <= train_rows and sum(map(len, clients)) == 40
    assert np.bincount(data.test_labels.numpy(), minlength=10).tolist() == [1] * 10  # stratified
    again, _ = load_federated_data(cfg)
    other, _ = load_federated_data(RunConfig().replace(**{**base, "seed": 2}))
    assert as_rows(again.test_images) == val and as_rows(other.test_images) != val  # deterministic per seed
    plain, _ = load_federated_data(RunConfig().replace(**{**base, "data.validation_fraction": None}))
    assert plain.eval_split == "test" and set(as_rows(plain.test_images)) <= test_rows


# ----------------------------------------------------------------------------------------------------------
# the workflow


def _smoke_raw() -> dict:
    return yaml.safe_load(CONFIGS["smoke"].read_text())


def test_the_workflow_tunes_each_method_once_and_feeds_every_run_its_record():
    wf = load_workflow({**_smoke_raw(), "results": "/tmp/r"})
    refs = list(wf.references)
    assert set(wf.tuning) == {("tiny", "digits", m) for m in wf.methods + refs}
    for name, ref in wf.references.items():  # each pooled reference searches its own rate with one client
        search = wf.tuning[("tiny", "digits", name)]
        assert search.method == ref["method"] and search.partition == "pooled"
        assert dict(search.points[0].settings)["partition.num_clients"] == 1
    t = wf.tuning[("tiny", "digits", "sfprompt")]
    assert t.base_lr == 0.03 and [p.lr for p in t.points] == [0.015, 0.06]
    sets = dict(t.points[1].settings)
    assert sets["data.validation_fraction"] == 0.2 and sets["train.lr"] == 0.06 and sets.get("partition.scheme", "iid") == "iid"
    assert sets["method_params.keep_ratio"] == 0.5  # the method's own settings, as in its main-grid runs
    assert sets["train.eval_every"] == sets["train.rounds"]  # scored after the last round only
    for run in wf.runs.values():  # ablation and sensitivity variants take SFPrompt's, references their own
        own = run.variant if run.partition == "pooled" else run.method
        assert run.lr_from == f"tuning/tiny/digits/{own}.json"
        wc = SimpleNamespace(backbone=run.backbone, dataset=run.dataset, partition=run.partition,
                             variant=run.variant, seed=run.seed)
        inputs = wf.train_input(wc)
        assert inputs["tuning"] == f"/tmp/r/{run.lr_from}"
        assert wf.lr_arg(wc, SimpleNamespace(keys=inputs.keys, tuning=inputs["tuning"])) == f"--lr-from {inputs['tuning']}"
    spec = json.loads(wf.tune_spec(SimpleNamespace(backbone="tiny", dataset="digits", method="sfprompt")))
    assert [p["run_dir"] for p in spec["points"]] == ["/tmp/r/tuning/tiny/digits/sfprompt/x0.5/seed100",
                                                       "/tmp/r/tuning/tiny/digits/sfprompt/x2/seed100"]
    assert spec["seeds"] == [100] and spec["near_tie"] == 1.0 and sets["seed"] == 100
    two = _smoke_raw()
    two["tuning"]["seeds"] = [100, 101]
    t2 = load_workflow({**two, "results": "/tmp/r"}).tuning[("tiny", "digits", "sfprompt")]
    assert [(p.multiplier, p.seed) for p in t2.points] == [(0.5, 100), (2.0, 100), (0.5, 101), (2.0, 101)]


def test_a_shared_method_is_not_tuned_and_trains_with_the_other_methods_choice():
    raw = _smoke_raw()
    raw["tuning"]["share"] = {"sfl_v1": "fedavg"}
    wf = load_workflow({**raw, "results": "/tmp/r"})
    assert ("tiny", "digits", "sfl_v1") not in wf.tuning and ("tiny", "digits", "fedavg") in wf.tuning
    v1 = [r for r in wf.runs.values() if r.method == "sfl_v1"]
    assert v1 and all(r.lr_from == "tuning/tiny/digits/fedavg.json" for r in v1)
    assert all(r.lr_from == f"tuning/tiny/digits/{r.variant if r.partition == 'pooled' else r.method}.json"
               for r in wf.runs.values() if r.method != "sfl_v1")
    assert wf.grid()["tuning_share"] == {"sfl_v1": "fedavg"}
    for run in wf.runs.values():  # the train verb is told whose record it reads, so it can still check it
        wc = SimpleNamespace(backbone=run.backbone, dataset=run.dataset, partition=run.partition,
                             variant=run.variant, seed=run.seed)
        inputs = wf.train_input(wc)
        arg = wf.lr_arg(wc, SimpleNamespace(keys=inputs.keys, tuning=inputs["tuning"]))
        assert arg.endswith(" --lr-method fedavg") == (run.method == "sfl_v1" and run.partition != "pooled"), arg


def test_recheck_trains_the_verdict_pair_at_the_runner_up_rate_in_every_cell():
    """tuning.recheck: every main-grid cell and final seed gets SFPrompt and the reference method once more, with
    the same settings, reading the runner-up rate from the same record; the other runs are unchanged."""
    raw = _smoke_raw()
    raw["tuning"]["recheck"] = True
    wf = load_workflow({**raw, "results": "/tmp/r"})
    plain = load_workflow({**_smoke_raw(), "results": "/tmp/r"})
    assert {k: v for k, v in wf.runs.items() if k in plain.runs} == plain.runs
    extra = {k: v for k, v in wf.runs.items() if k not in plain.runs}
    cells = {(r.backbone, r.dataset, r.partition, r.seed) for r in plain.runs.values() if r.partition != "pooled"}
    pair = ("sfprompt", wf.doc["report"]["reference_method"])
    assert set(extra) == {(b, d, p, f"{m}-runner_up", s) for b, d, p, s in cells for m in pair}
    for run in extra.values():
        twin = plain.runs[(run.backbone, run.dataset, run.partition, run.method, run.seed)]
        assert run.settings == twin.settings and run.lr_from == twin.lr_from and run.lr_pick == "runner_up"
        assert run.roles == (Role("runner_up", run.method),)
        wc = SimpleNamespace(backbone=run.backbone, dataset=run.dataset, partition=run.partition,
                             variant=run.variant, seed=run.seed)
        inputs = wf.train_input(wc)
        arg = wf.lr_arg(wc, SimpleNamespace(keys=inputs.keys, tuning=inputs["tuning"]))
        assert arg == f"--lr-from {inputs['tuning']} --lr-pick runner_up"
    listed = {r["dir"]: r for r in wf.grid()["runs"]}
    assert all(listed[r.dir]["lr_pick"] == "runner_up" for r in extra.values())
    assert not any("lr_pick" in listed[r.dir] for r in plain.runs.values())  # grid.json as before for them
    del raw["tuning"]  # without a tuning section there is no runner-up to recheck at
    assert not load_workflow({**raw, "results": "/tmp/r"}).recheck_methods()


def test_the_recheck_runs_train_at_the_runner_up_rate_and_the_claims_read_them(tiny_results):
    """End to end (the tiny profile, tuning.recheck on): each recheck run's resolved config states its record's
    runner-up rate, env.json says so, and the claims table's accuracy row and the manifest name the recheck."""
    results = tiny_results.results
    wf = load_workflow(tiny_results.raw)
    rechecks = [r for r in wf.runs.values() if r.lr_pick == "runner_up"]
    assert {r.variant for r in rechecks} == {"sfprompt-runner_up", "fedavg-runner_up"}
    for run in rechecks:
        doc = json.loads((results / run.lr_from).read_text())
        resolved = yaml.safe_load((results / run.dir / "config.resolved.yaml").read_text())
        env = json.loads((results / run.dir / "env.json").read_text())
        assert resolved["train"]["lr"] == doc["runner_up_lr"] != doc["chosen_lr"] and env["lr_pick"] == "runner_up"
        twin = yaml.safe_load((results / wf.runs[run.key[:3] + (run.method, run.seed)].dir
                               / "config.resolved.yaml").read_text())
        assert twin["train"]["lr"] == doc["chosen_lr"]
    claims = pd.read_csv(results / "tables" / "claims.csv")
    note = claims[claims.claim == "accuracy"].note.iloc[0]
    assert "rechecked at the runner-up rates: SFPrompt at its runner-up lr" in note and "FedAvg at its" in note
    manifest = json.loads((results / "manifest.json").read_text())
    behind = {r["dir"] for r in manifest["outputs"]["tables/claims.csv"]["runs"]}
    assert {r.dir for r in rechecks} <= behind


@pytest.mark.parametrize("doc, pick, expected", [
    ({"chosen_lr": 0.02, "runner_up_lr": 0.06}, "chosen", (0.02, "chosen")),
    ({"chosen_lr": 0.02, "runner_up_lr": 0.06}, "runner_up", (0.06, "runner_up")),
    ({"chosen_lr": 0.02, "runner_up_lr": None}, "runner_up",
     (0.02, "chosen (the record has no runner-up: no other grid point was scored)")),
])
def test_pick_lr_reads_the_chosen_or_the_runner_up_rate(doc, pick, expected):
    assert pick_lr(doc, pick) == expected


def test_train_lr_pick_runner_up_trains_at_the_records_runner_up(tmp_path):
    """train --lr-from R --lr-pick runner_up: the resolved config (and so the hash) states the runner-up rate and
    env.json says which rate was taken."""
    from tests.test_run import cli, write_cfg

    cfg = write_cfg(tmp_path, method="fedprompt", rounds=1)
    record = tmp_path / "fedprompt.json"
    record.write_text(json.dumps({"chosen_lr": 0.0123, "runner_up_lr": 0.0456, "method": "fedprompt",
                                  "dataset": "digits"}))
    cli("train", "-c", str(cfg), "--lr-from", str(record), "--lr-pick", "runner_up", "--out", str(tmp_path / "a"),
        "-q")
    resolved = yaml.safe_load((tmp_path / "a" / "config.resolved.yaml").read_text())
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    assert resolved["train"]["lr"] == 0.0456 and env["lr_pick"] == "runner_up"
    assert env["lr_tuning"]["runner_up_lr"] == 0.0456 and env["lr_tuning"]["chosen_lr"] == 0.0123


def test_without_a_tuning_section_the_workflow_is_unchanged():
    raw = _smoke_raw()
    del raw["tuning"]
    wf = load_workflow({**raw, "results": "/tmp/r"})
    assert not wf.tuning and not wf.tuning_targets() and "tuning" not in wf.tables()
    assert all(r.lr_from is None for r in wf.runs.values()) and len(wf.runs) == 44
    run = next(iter(wf.runs.values()))
    wc = SimpleNamespace(backbone=run.backbone, dataset=run.dataset, partition=run.partition, variant=run.variant,
                         seed=run.seed)
    inputs = wf.train_input(wc)
    assert "tuning" not in inputs and wf.lr_arg(wc, SimpleNamespace(keys=inputs.keys)) == ""


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["tuning"].update(partition="nope"), "tuning.partition"),
    (lambda c: c["tuning"].update(grid=[]), "tuning.grid"),
    (lambda c: c["tuning"].update(validation_fraction=1.0), "tuning.validation_fraction"),
    (lambda c: c["ablations"]["variants"].update(fast={"train.lr": 0.1}), "ablations.variants.fast.train.lr"),
    (lambda c: c["tuning"].update(share={"sfl_v1": "nope"}), "tuning.share.sfl_v1"),
    (lambda c: c["tuning"].update(share={"sfl_v1": "fedavg", "fedavg": "sfl_v2"}), "tuning.share.sfl_v1"),
])
def test_bad_tuning_sections_fail_with_one_line_naming_the_key(edit, expected):
    raw = copy.deepcopy(_smoke_raw())
    edit(raw)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_workflow(raw)


def test_every_run_trains_with_its_methods_tuned_lr(smoke_results):
    """End to end (smoke profile): each run's resolved config states the learning rate its tuning record chose,
    the record's scores are the grid runs' final validation accuracies, and they never read the test split."""
    wf = load_workflow({**_smoke_raw(), "results": str(smoke_results)})
    records = {}
    for (backbone, dataset, search), t in wf.tuning.items():
        doc = json.loads((smoke_results / t.file).read_text())
        records[search] = doc
        assert doc["grid"] == [0.5, 2.0] and doc["validation_fraction"] == 0.2 and doc["seeds"] == [100]
        for p in t.points:
            env = json.loads((smoke_results / p.dir / "env.json").read_text())
            assert env["eval_split"] == "validation" and env.get("test_images") is None
            metrics = pd.read_csv(smoke_results / p.dir / "metrics.csv")
            assert "test" not in set(metrics.split)
        scores, tolerance = [p["val_accuracy"] for p in doc["points"]], doc["near_tie"] * doc["standard_error"]
        assert doc["chosen_lr"] == doc["points"][choose([p["lr"] for p in doc["points"]], scores, tolerance)]["lr"]
    for run in wf.runs.values():
        resolved = yaml.safe_load((smoke_results / run.dir / "config.resolved.yaml").read_text())
        own = run.variant if run.partition == "pooled" else run.method  # a pooled reference: its own search
        assert resolved["train"]["lr"] == records[own]["chosen_lr"], run.dir
        env = json.loads((smoke_results / run.dir / "env.json").read_text())
        assert env["lr_from"].endswith(run.lr_from) and env["lr_tuning"]["chosen_lr"] == resolved["train"]["lr"]
    table = pd.read_csv(smoke_results / "tables" / "tuning.csv")
    assert len(table) == 16 and table.chosen.sum() == 8  # 5 methods + 3 pooled references, 2 grid points each
    assert "validation split" in (smoke_results / "tables" / "accuracy.md").read_text()


def test_train_lr_from_makes_the_resolved_config_state_the_choice(tmp_path):
    """The train verb with --lr-from: config.resolved.yaml (and so the config hash) carries the record's choice."""
    from tests.test_run import cli, write_cfg

    cfg = write_cfg(tmp_path, method="fedprompt", rounds=1)
    record = tmp_path / "fedprompt.json"
    record.write_text(json.dumps({"chosen_lr": 0.0123, "chosen_multiplier": 0.3, "chosen_val_accuracy": 0.5,
                                  "method": "fedprompt", "dataset": "digits", "grid": [0.3, 1.0], "partition": "iid",
                                  "seed": 0, "validation_fraction": 0.2, "criterion": "x"}))
    cli("train", "-c", str(cfg), "--lr-from", str(record), "--set", "train.lr=0.5", "--out", str(tmp_path / "a"), "-q")
    resolved = yaml.safe_load((tmp_path / "a" / "config.resolved.yaml").read_text())
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    assert resolved["train"]["lr"] == 0.0123 and env["lr_tuning"]["chosen_lr"] == 0.0123
    from benchmark.config import from_dict

    assert env["config_hash"] == from_dict(resolved).hash()  # the hash covers the chosen lr
    wrong = cli("train", "-c", str(cfg), "--lr-from", str(record), "--set", "train.method=fedavg", "--out",
                str(tmp_path / "b"), "-q", check=False)
    assert wrong.returncode == 2 and "tuned for method 'fedprompt'" in wrong.stderr
    # a run that takes another method's choice (tuning.share) names it, and is checked against that name
    cli("train", "-c", str(cfg), "--lr-from", str(record), "--lr-method", "fedprompt", "--set", "train.method=fedavg",
        "--out", str(tmp_path / "c"), "-q")
    assert yaml.safe_load((tmp_path / "c" / "config.resolved.yaml").read_text())["train"]["lr"] == 0.0123
    wrong = cli("train", "-c", str(cfg), "--lr-from", str(record), "--lr-method", "sfl_v2", "--out",
                str(tmp_path / "d"), "-q", check=False)
    assert wrong.returncode == 2 and "tuned for method 'fedprompt', this run has 'sfl_v2'" in wrong.stderr


def test_a_diverging_grid_point_is_recorded_not_fatal(tmp_path):
    """train --diverged-ok (a grid point trained alone): a NaN loss leaves a one-row 'diverged' record the tune verb
    scores as diverged, instead of failing the workflow."""
    from tests.test_run import cli, write_cfg

    cfg = write_cfg(tmp_path, method="fedavg", lr=1e30, rounds=3)
    out = tmp_path / "x3"
    proc = cli("train", "-c", str(cfg), "--set", "data.validation_fraction=0.2", "--diverged-ok", "--out", str(out), "-q")
    assert proc.returncode == 0 and "diverged" in proc.stdout
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["train"]["lr"] == 1e30 and json.loads((out / "env.json").read_text())["diverged"]
    spec = {"backbone": "b", "dataset": "digits", "method": "fedavg", "partition": "iid", "seed": 0,
            "validation_fraction": 0.2, "base_lr": 1e30, "points": [{"multiplier": 1.0, "lr": 1e30, "run_dir": str(out)}]}
    doc = gather(spec)
    assert doc["points"][0]["diverged"] and doc["all_diverged"] and doc["chosen_val_accuracy"] is None


def test_a_diverging_final_run_is_a_result_with_every_file(tmp_path):
    """The workflow's train jobs pass --diverged-ok: a run whose loss diverges writes every file the train rule
    declares, its ledgers up to that round and one 'diverged' row on the test split, and the report reads it as
    a diverged cell (no final accuracy) instead of the workflow stopping with no table at all."""
    from benchmark.errors import DIVERGED
    from benchmark.report.load import _run_summary
    from benchmark.run import HEAD_STATE
    from tests.test_run import FILES, cli, write_cfg

    cfg = write_cfg(tmp_path, method="sfl_v2", lr=1e30, rounds=3)
    out = tmp_path / "run"
    failed = cli("train", "-c", str(cfg), "--out", str(tmp_path / "strict"), "-q", check=False)
    assert failed.returncode == 2 and "non-finite training loss" in failed.stderr  # without the flag: an error
    proc = cli("train", "-c", str(cfg), "--diverged-ok", "--out", str(out), "-q")
    assert proc.returncode == 0 and "diverged" in proc.stdout
    for name in (*FILES, HEAD_STATE):
        assert (out / name).is_file(), name
    metrics = pd.read_csv(out / "metrics.csv")
    marker = metrics[metrics.metric == DIVERGED]
    assert len(marker) == 1 and marker.split.iloc[0] == "test" and marker.client.iloc[0] == -1
    assert len(pd.read_csv(out / "comm.csv")) > 0  # what was exchanged before the loss diverged
    assert not (out / "checkpoint.pt").exists()
    row, _ = _run_summary({"backbone": "b", "dataset": "digits", "partition": "dirichlet", "variant": "sfl_v2",
                           "method": "sfl_v2", "seed": 0, "dir": "run", "settings": {}}, out)
    assert row["diverged"] and math.isnan(row["final_accuracy"])


# ----------------------------------------------------------------------------------------------------------
# the search: one process trains every grid point


def _search_spec(tmp_path: Path, cfg_path: Path, lrs: dict[float, float]) -> dict:
    base = yaml.safe_load(cfg_path.read_text())
    flat = {f"{section}.{key}": value for section, body in base.items() if isinstance(body, dict)
            for key, value in body.items()}
    flat.update({k: v for k, v in base.items() if not isinstance(v, dict)})
    flat["data.validation_fraction"] = 0.2
    points = [{"multiplier": mult, "lr": lr, "run_dir": str(tmp_path / "search" / f"x{mult:g}"),
               "settings": {**flat, "train.lr": lr}} for mult, lr in lrs.items()]
    return {"backbone": "b", "dataset": "digits", "method": base["train"]["method"], "partition": "iid",
            "seed": 0, "validation_fraction": 0.2, "base_lr": 0.05, "points": points}


def test_a_search_trains_its_points_in_one_process_exactly_as_the_train_verb_alone(tmp_path):
    """The tune verb trains every grid point in one process (one import of torch and timm per search). Each
    point, the second one included, equals the same point trained by the train verb in a process of its own,
    byte for byte: nothing one point leaves behind (the global RNG, thread settings) reaches the next."""
    from tests.test_run import cli, write_cfg

    cfg = write_cfg(tmp_path, method="sfprompt")
    spec = _search_spec(tmp_path, cfg, {1.0: 0.05, 3.0: 0.15})
    record = tmp_path / "sfprompt.json"
    cli("tune", "--spec", json.dumps(spec), "--threads", "1", "--out", str(record), "--quiet")
    doc = json.loads(record.read_text())
    assert [p["lr"] for p in doc["points"]] == [0.05, 0.15] and doc["chosen_lr"] in (0.05, 0.15)
    for mult, lr in ((3.0, 0.15), (1.0, 0.05)):
        alone = tmp_path / f"alone{mult:g}"
        cli("train", "-c", str(cfg), "--set", f"train.lr={lr}", "--set", "data.validation_fraction=0.2",
            "--diverged-ok", "--out", str(alone), "-q")
        for name in ("metrics.csv", "comm.csv", "flops.csv"):
            assert (alone / name).read_bytes() == (tmp_path / "search" / f"x{mult:g}" / name).read_bytes(), name


def test_a_point_scored_after_its_last_round_only_equals_one_scored_every_round(tmp_path):
    """The workflow's grid points evaluate after their last round only (``train.eval_every`` = rounds): the
    criterion reads that round alone, and evaluation changes no state training reads, so the last round's
    validation score, every training loss and the ledgers equal an every-round run's. SFPrompt, whose frozen
    body persists across rounds (a method that reloads every parameter each round would hide an evaluation
    that modified the model)."""
    from tests.test_run import cli, write_cfg

    cfg = write_cfg(tmp_path, method="sfprompt", rounds=3)
    runs = {}
    for every in (1, 3):
        out = tmp_path / f"every{every}"
        cli("train", "-c", str(cfg), "--set", "data.validation_fraction=0.2", "--set", f"train.eval_every={every}",
            "--diverged-ok", "--out", str(out), "-q")
        runs[every] = out
    def read(every: int, name: str) -> pd.DataFrame:  # the settings differ, so the config hash does
        return pd.read_csv(runs[every] / name).drop(columns=["config_hash", "git_revision"], errors="ignore")

    m1, m3 = read(1, "metrics.csv"), read(3, "metrics.csv")
    val = lambda m: m[m.split == "validation"].reset_index(drop=True)  # noqa: E731
    assert sorted(val(m1)["round"].unique()) == [0, 1, 2] and sorted(val(m3)["round"].unique()) == [2]
    pd.testing.assert_frame_equal(val(m1)[val(m1)["round"] == 2].reset_index(drop=True), val(m3))
    train = lambda m: m[m.split != "validation"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(train(m1), train(m3))  # every training loss, round by round
    for name in ("comm.csv", "flops.csv"):
        pd.testing.assert_frame_equal(read(1, name), read(3, name))


def test_a_search_reuses_finished_points_and_retrains_stale_ones(tmp_path):
    """A rerun (Snakemake reruns the job when a point's settings change) reuses each point whose folder holds
    a finished run of the same config hash, and retrains a point whose folder holds another config's run."""
    from benchmark.tuning import finished_hash, search

    from tests.test_run import write_cfg

    cfg = write_cfg(tmp_path, method="fedavg", rounds=1)
    spec = _search_spec(tmp_path, cfg, {1.0: 0.05, 3.0: 0.15})
    lines: list[str] = []
    first = search(spec, threads=1, log=lines.append)
    kept = tmp_path / "search" / "x1" / "metrics.csv"
    stamp, before = kept.stat().st_mtime_ns, finished_hash(kept.parent)
    assert before is not None and all("trained" in line for line in lines)
    spec["points"][1]["lr"] = spec["points"][1]["settings"]["train.lr"] = 0.45  # the x3 point changed
    lines.clear()
    second = search(spec, threads=1, log=lines.append)
    assert kept.stat().st_mtime_ns == stamp and "reused" in lines[0] and "trained" in lines[1]
    assert second["points"][0] == first["points"][0]
    resolved = yaml.safe_load((tmp_path / "search" / "x3" / "config.resolved.yaml").read_text())
    assert resolved["train"]["lr"] == 0.45 and second["points"][1]["lr"] == 0.45
