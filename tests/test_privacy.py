"""Privacy attacks on smashed data (benchmark/privacy, issue #12): offline, on real images (the package-shipped
digits), real timm ViTs (random weights) and the metrics checked against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from benchmark.config import DataConfig
from benchmark.errors import ConfigError
from benchmark.data.cache import load_image_data
from benchmark.errors import UnknownNameError
from benchmark.models.split import SplitViT
from benchmark.privacy import ATTACKS, AttackNotApplicable, AttackSettings, ServerKnowledge, add_noise, mean_ci, psnr, ssim
from benchmark.privacy.evaluate import to_unit
from benchmark.privacy.metrics import PSNR_CAP, per_image

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Real images: the package-shipped digits at 32 px (test split: victims; train split: auxiliary)."""
    train, test = load_image_data(DataConfig(dataset="digits", cache_dir=str(tmp_path_factory.mktemp("cache"))), 32, 0)
    return to_unit(test.images[:12], 32), to_unit(train.images[:256], 32)


def vit_b16_geometry(head_blocks: int = 0, prompt_len: int = 4) -> SplitViT:
    """A real timm ViT-B/16 (random weights, 2 blocks to stay fast) at 32 px: 768 outputs per 16×16×3 patch."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=10)
    model = SplitViT(vit, head_blocks, 0, prompt_len=prompt_len).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tiny(head_blocks: int) -> SplitViT:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, embed_dim=64, depth=3,
                            num_heads=2, num_classes=10)
    model = SplitViT(vit, head_blocks, 1, prompt_len=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def smashed(know: ServerKnowledge, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return know.head(x)


def mean_psnr(x: torch.Tensor, rec: torch.Tensor) -> float:
    return float(np.mean([p for p, _ in per_image(x, rec)]))


# ----------------------------------------------------------------------------------------------------------
# attacks


@pytest.mark.parametrize("attack", ["analytic", "lmmse"])  # square W: the prior changes nothing at σ = 0
def test_linear_attacks_invert_head_blocks_0_of_a_real_vit_on_real_images(digits, attack):
    x, aux = digits
    know = ServerKnowledge(vit_b16_geometry(), MEAN, STD, aux)
    rec = ATTACKS.get(attack)(smashed(know, x), know)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    values = [p for p, _ in per_image(x, rec)]
    assert min(values) > 40.0, values


def test_analytic_attack_refuses_a_non_linear_head(digits):
    x, aux = digits
    know = ServerKnowledge(vit_b16_geometry(head_blocks=1), MEAN, STD, aux)
    with pytest.raises(AttackNotApplicable, match="head_blocks = 0 only"):
        ATTACKS.get("analytic")(smashed(know, x), know)


def test_noise_defence_lowers_psnr(digits):
    x, aux = digits
    know = ServerKnowledge(vit_b16_geometry(), MEAN, STD, aux)
    z = smashed(know, x)
    clean = mean_psnr(x, ATTACKS.get("analytic")(z, know))
    noisy = add_noise(z, 0.5, torch.Generator().manual_seed(0))
    assert not torch.equal(noisy, z) and torch.equal(add_noise(z, 0.0), z)
    assert mean_psnr(x, ATTACKS.get("analytic")(noisy, know)) < clean - 20


def test_optimisation_attack_beats_the_mean_image_at_head_blocks_1(digits):
    x, aux = digits
    know = ServerKnowledge(tiny(head_blocks=1), MEAN, STD, aux, settings=AttackSettings(opt_steps=60))
    z = smashed(know, x[:6])
    baseline = mean_psnr(x[:6], ATTACKS.get("mean_image")(z, know))
    attacked = mean_psnr(x[:6], ATTACKS.get("optimisation")(z, know))
    assert attacked > baseline + 3, (attacked, baseline)
    assert not any(p.requires_grad for p in know.model.parameters())  # the attack leaves the model as it was


def test_decoder_attack_beats_the_mean_image_at_head_blocks_0(digits):
    x, aux = digits
    know = ServerKnowledge(tiny(head_blocks=0), MEAN, STD, aux, settings=AttackSettings(decoder_epochs=12, decoder_hidden=64))
    z = smashed(know, x)
    rec = ATTACKS.get("decoder")(z, know)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    assert mean_psnr(x, rec) > mean_psnr(x, ATTACKS.get("mean_image")(z, know)) + 1


def test_registry_rejects_an_unknown_attack_with_the_valid_list():
    with pytest.raises(UnknownNameError, match="unknown attack 'gradient'; valid: analytic, decoder, lmmse, mean_image, "
                                               "optimisation"):
        ATTACKS.get("gradient")


# ----------------------------------------------------------------------------------------------------------
# metrics


def test_psnr_and_ssim_agree_with_hand_computation():
    a = np.zeros((3, 8, 8))
    assert psnr(a, a + 0.1) == pytest.approx(20.0)              # 10 log10(1 / 0.01)
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 8, 8)), rng.random((3, 8, 8))
    assert psnr(x, y) == pytest.approx(10 * math.log10(1 / np.mean((x - y) ** 2)))
    assert psnr(x, x) == PSNR_CAP                                 # exact: capped, not infinite
    assert ssim(x, x) == pytest.approx(1.0)
    c1 = 0.01 ** 2                                                # constant images: only the luminance term is left
    assert ssim(np.full((3, 8, 8), 0.2), np.full((3, 8, 8), 0.4)) == pytest.approx(
        (2 * 0.2 * 0.4 + c1) / (0.2 ** 2 + 0.4 ** 2 + c1))
    mean, half, n = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4) and half == pytest.approx(3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-5)
    assert math.isnan(mean_ci([1.0])[1])


# ----------------------------------------------------------------------------------------------------------
# the job and its outputs


def test_privacy_job_writes_scores_and_renders_table_and_figures(tmp_path):
    """evaluate() on a scratch tiny ViT (smoke architecture), then the table and both figures from its files."""
    from benchmark.privacy.evaluate import evaluate, write_outputs
    from benchmark.report.privacy import frontier, privacy_table, reconstruction_grid

    settings = {"data.dataset": "digits", "data.cache_dir": str(tmp_path / "cache"), "model.backbone": "vit_tiny_patch16_224",
                "model.img_size": 16, "model.patch_size": 4, "model.embed_dim": 32, "model.depth": 4,
                "model.num_heads": 2, "model.head_blocks": 0, "model.tail_blocks": 0, "model.prompt_len": 2,
                "device": "cpu"}
    spec = {"backbone": "tiny", "split": [0, 0], "run_labels": {}, "attacks": ["analytic", "lmmse", "optimisation", "mean_image"],
            "noise_sigma": [0.0, 0.5], "rounds": ["first", "final"], "images": 4, "aux_samples": 32,
            "samples_per_client": 50, "attack_settings": {"opt_steps": 5}, "defence": {"steps": 3, "attacks": ["lmmse"]},
            "cases": [{"method": m, "settings": {**settings, "train.method": m}, "run_dir": None}
                      for m in ("sfl_v1", "sfprompt")]}
    frame, examples = evaluate(json.loads(json.dumps(spec)), log=lambda *_: None)
    scored = frame[frame.image >= 0]
    defence = scored[scored.note.str.startswith("defence")]   # per method: lmmse and the mean image at the σ found
    scored = scored[~scored.note.str.startswith("defence")]
    assert set(scored.attack) == {"analytic", "lmmse", "optimisation", "mean_image"} and set(scored.sigma) == {0.0, 0.5}
    assert (frame[frame.image < 0].note.str.startswith("no run")).sum() == 2  # no run: final round not attacked
    assert sorted(defence.groupby(["method", "attack"]).size().items()) == [
        (("sfl_v1", "lmmse"), 4), (("sfl_v1", "mean_image"), 4), (("sfprompt", "lmmse"), 4), (("sfprompt", "mean_image"), 4)]
    found = defence.groupby(["method", "attack"]).psnr.mean()
    for m in ("sfl_v1", "sfprompt"):
        assert found[(m, "lmmse")] <= found[(m, "mean_image")] + 3
    sf = scored[scored.method == "sfprompt"].client_flops_pct_of_fedavg.iloc[0]
    assert 0 < sf < 100
    paths = write_outputs(frame, examples, tmp_path / "privacy" / "tiny_h0t0")
    assert all(p.is_file() for p in paths)
    table = privacy_table(frame)
    assert len(table.display) == 4 + 2 and "Noise acc. cost" in table.display  # + the σ found per method
    assert list(table.display.columns[5:9]) == ["analytic", "lmmse", "optimisation", "mean image"]
    assert set(table.display.Server) == {"all"}  # no final round here: no main-server rows
    assert sum(n.startswith("Defence σ, 0/0 ") for n in table.notes) == 2
    assert any("not measured" in n for n in table.notes)
    with np.load(paths[1]) as data:
        grid = reconstruction_grid(frame, {"h0t0": {k: data[k] for k in data.files}})
    assert len(grid.axes) == 5 * 4   # originals + 4 attacks, 4 images each
    assert frontier(frame).axes


def test_smoke_profile_attacks_every_split_method_with_its_run():
    from benchmark.workflow.grid import load_workflow_file

    wf = load_workflow_file("config/smoke.yaml", {"results": "/tmp/r"})
    cases = {split: {c["method"]: c["run"] for c in cs} for split, cs in wf.privacy_cases.items()}
    assert cases["h0t0"] == {"sfl_v1": None, "sfl_v2": None, "sfprompt": "runs/tiny/digits/iid/sfprompt-split_h0t0/seed0"}
    assert cases["h1t1"]["sfl_v2"] == "runs/tiny/digits/iid/sfl_v2/seed0"
    assert wf.privacy_targets() == [f"/tmp/r/privacy/tiny_{s}.{x}" for s in ("h0t0", "h1t1") for x in ("csv", "npz")]


def test_privacy_verb_rejects_bad_json_in_one_line(capsys):
    from benchmark.__main__ import main

    assert main(["privacy", "--spec", "{not json", "--out", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --spec is not valid JSON") and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------------------
# the noise defence trained (method_params.smashed_noise_sigma): its runs and its accuracy cost


def test_smoke_profile_trains_each_privacy_method_with_the_noise_on_every_seed():
    from benchmark.workflow.grid import load_workflow_file
    from benchmark.workflow.names import NOISE_KEY

    wf = load_workflow_file("config/smoke.yaml", {"results": "/tmp/r"})
    noise = {r.key: r for r in wf.runs.values() if any(role.kind == "noise" for role in r.roles)}
    assert sorted(noise) == [("tiny", "digits", "iid", f"{m}-noise0.25", s)
                             for m in ("sfl_v1", "sfl_v2", "sfprompt") for s in (0, 1)]
    for r in noise.values():  # the method's own run plus the noise, nothing else
        base = dict(wf.runs[("tiny", "digits", "iid", r.method, r.seed)].settings)
        assert dict(r.settings) == {**base, NOISE_KEY: 0.25}
    cases = {c["method"]: c for c in wf.privacy_cases["h1t1"]}
    assert cases["sfl_v1"]["noise_runs"] == {"0.25": "runs/tiny/digits/iid/sfl_v1-noise0.25/seed0"}
    assert all("noise_runs" not in c for c in wf.privacy_cases["h0t0"])  # the noise runs train at the runs' split
    spec = json.loads(wf.privacy_spec(type("W", (), {"backbone": "tiny", "split": "h1t1"})()))
    assert spec["cases"][0]["noise_runs"] == {"0.25": "/tmp/r/runs/tiny/digits/iid/sfl_v1-noise0.25/seed0"}
    assert "/tmp/r/runs/tiny/digits/iid/sfprompt-noise0.25/seed0" in spec["run_labels"]
    acc = wf.privacy_accuracy_runs("h1t1")
    assert {(a["method"], a["sigma"], a["seed"]) for a in acc} == {
        (m, s, seed) for m in ("sfl_v1", "sfl_v2", "sfprompt") for s in (0.0, 0.25) for seed in (0, 1)}
    off = load_workflow_file("config/smoke.yaml", {"results": "/tmp/r", "privacy": {
        **wf.doc["privacy"], "noise_training": False}})
    assert len(off.runs) == len(wf.runs) - 6 and off.privacy_accuracy_runs("h1t1") == []
    only = load_workflow_file("config/smoke.yaml", {"results": "/tmp/r", "privacy": {
        **wf.doc["privacy"], "noise_training": ["sfprompt"]}})  # a list trains only those methods' noise runs
    assert len(only.runs) == len(wf.runs) - 4
    assert {(a["method"], a["sigma"]) for a in only.privacy_accuracy_runs("h1t1")} == {
        ("sfprompt", 0.0), ("sfprompt", 0.25)}
    with pytest.raises(ConfigError, match="'privacy.defence.methods': 'sfl_v1' is not one of the privacy methods"):
        load_workflow_file("config/smoke.yaml", {"results": "/tmp/r", "privacy": {
            **wf.doc["privacy"], "methods": ["sfprompt"], "defence": {"steps": 2, "methods": ["sfl_v1"]}}})
    with pytest.raises(ConfigError, match="'privacy.noise_training': 'fedavg' is not one of the privacy methods"):
        load_workflow_file("config/smoke.yaml", {"results": "/tmp/r", "privacy": {
            **wf.doc["privacy"], "noise_training": ["fedavg"]}})


def test_privacy_table_reports_the_noise_accuracy_cost_paired_by_seed():
    from benchmark.report.privacy import privacy_table
    from benchmark.stats import paired_difference

    rows = []
    for sigma, run, level in ((0.0, "runs/a/seed0", 30.0), (0.5, "runs/a-noise0.5/seed0", 20.0)):
        for attack, shift in (("optimisation", 0.0), ("mean_image", -15.0)):
            for i in range(4):
                rows.append({"backbone": "t", "dataset": "d", "head_blocks": 1, "tail_blocks": 1, "method": "sfl_v1",
                             "round": "final", "run": run, "attack": attack, "sigma": sigma, "image": i,
                             "psnr": level + shift + i, "ssim": 0.5, "seconds": 1.0, "smashed_rms": 0.4,
                             "client_flops_pct_of_fedavg": 10.0, "note": ""})
    images = pd.DataFrame(rows)
    acc = {0.0: [80.0, 82.0, 79.0], 0.5: [75.0, 78.0, 76.0]}
    runs = pd.DataFrame([{"dir": f"runs/{'a' if s == 0 else 'a-noise0.5'}/seed{k}", "final_accuracy": v}
                         for s, vs in acc.items() for k, v in enumerate(vs)])
    acc_runs = pd.DataFrame([{"head_blocks": 1, "tail_blocks": 1, "method": "sfl_v1", "sigma": s, "seed": k,
                              "dir": f"runs/{'a' if s == 0 else 'a-noise0.5'}/seed{k}"} for s in acc for k in range(3)])
    table = privacy_table(images, runs, acc_runs)
    noisy = table.display[table.display["σ (rms)"].str.startswith("0.5")].iloc[0]
    mean, half, n = paired_difference(pd.Series(acc[0.5]), pd.Series(acc[0.0]))
    assert noisy["Noise acc. cost"] == f"{mean:.1f} ± {half:.1f} pp (n=3)" and mean == pytest.approx(-4.0)
    assert noisy["Acc. %"].startswith("76.3 ± ") and noisy["Noise PSNR cut"] == "+10.0 dB"
    assert any("trained with the noise" in n for n in table.notes)
    assert not any("not measured" in n for n in table.notes)
    clean = table.display[table.display["σ (rms)"].str.startswith("0 ")].iloc[0]
    assert clean["Noise acc. cost"] == "–" and clean["Acc. %"].startswith("80.3 ± ")


def test_final_round_attacks_at_a_trained_sigma_use_the_noise_trained_runs_head(tmp_path):
    """With ``noise_runs``, σ > 0's final round is the noise-trained run's head (what that server sees); round 0
    is the same state either way; σ = 0 keeps the method's own run."""
    from benchmark.config import from_dict
    from benchmark.methods import method_class
    from benchmark.privacy.evaluate import evaluate
    from benchmark.run import write_head_state
    from benchmark.overrides import unflatten

    settings = {"data.dataset": "digits", "data.cache_dir": str(tmp_path / "cache"), "model.backbone": "vit_tiny_patch16_224",
                "model.img_size": 16, "model.patch_size": 4, "model.embed_dim": 32, "model.depth": 4,
                "model.num_heads": 2, "model.head_blocks": 1, "model.tail_blocks": 1, "device": "cpu",
                "train.method": "sfl_v1"}
    model = method_class("sfl_v1").build_model(from_dict(unflatten(settings)), 10)
    head = {k: v.detach() for k, v in model.named_parameters() if k.startswith("head.")}
    for name, shift in (("clean", 0.0), ("noisy", 0.3)):
        (tmp_path / name).mkdir()
        write_head_state(tmp_path / name / "head_state.safetensors", {k: v + shift for k, v in head.items()})
    clean, noisy = str(tmp_path / "clean"), str(tmp_path / "noisy")
    spec = {"backbone": "tiny", "split": [1, 1], "run_labels": {clean: "runs/clean", noisy: "runs/noisy"},
            "attacks": ["mean_image"], "noise_sigma": [0.0, 0.5], "rounds": ["first", "final"], "images": 2,
            "aux_samples": 8, "samples_per_client": 50,
            "cases": [{"method": "sfl_v1", "settings": settings, "run_dir": clean, "noise_runs": {"0.5": noisy}}]}
    frame, _ = evaluate(json.loads(json.dumps(spec)), log=lambda *_: None)
    runs = frame.groupby(["round", "sigma"]).run.first().to_dict()
    assert runs == {("first", 0.0): "runs/clean", ("first", 0.5): "runs/noisy",
                    ("final", 0.0): "runs/clean", ("final", 0.5): "runs/noisy"}
    rms = frame.groupby(["round", "sigma"]).smashed_rms.first()
    assert rms[("first", 0.0)] == rms[("first", 0.5)] and rms[("final", 0.0)] != rms[("final", 0.5)]


def test_the_table_and_the_claims_row_report_the_strongest_attack():
    """At 0/0 the prior-based attack (lmmse) beats the others: the table's 'vs mean image' and the claims row
    name it and its PSNR, not the minimum-norm analytic attack's or the decoder's."""
    from benchmark.report.privacy import privacy_claim, privacy_table, summarise

    levels = {"analytic": 21.8, "lmmse": 51.0, "decoder": 22.5, "mean_image": 11.9}
    rows = [{"backbone": "vit_s32", "dataset": "cifar10", "head_blocks": 0, "tail_blocks": 0, "method": "sfprompt",
             "round": "final", "run": "runs/x", "attack": a, "sigma": 0.0, "image": i, "psnr": level + 0.5 * i,
             "ssim": 0.9, "seconds": 1.0, "smashed_rms": 1.0, "client_flops_pct_of_fedavg": 1.7, "note": ""}
            for a, level in levels.items() for i in range(4)]
    frame = pd.DataFrame(rows)
    display = privacy_table(frame).display.iloc[0]
    assert display["vs mean image"].startswith("lmmse: +39.1") and display["lmmse"].startswith("51.8")
    claim = privacy_claim(summarise(frame))[0]
    assert claim["ours_value"] == pytest.approx(51.75) and claim["note"].startswith("best attack: lmmse")
    assert claim["verdict"] == "images recovered"


def test_splitfeds_main_server_alone_attacks_the_final_round_with_the_round_0_head(tmp_path):
    """SplitFed's main server does not see the fed server's average: at the final round SFL-V1 gets ``main`` rows
    attacked with the head as broadcast in round 0, beside the ``all`` rows (main and fed server colluding);
    SFPrompt's one server and round 0 have ``all`` rows only. Here the trained head differs from round 0's, so
    the analytic inversion is exact for the colluding server and not for the main server alone."""
    from benchmark.config import from_dict
    from benchmark.methods import method_class
    from benchmark.privacy.evaluate import evaluate
    from benchmark.report.privacy import privacy_table
    from benchmark.run import write_head_state
    from benchmark.overrides import unflatten

    settings = {"data.dataset": "digits", "data.cache_dir": str(tmp_path / "cache"), "model.backbone": "vit_tiny_patch16_224",
                "model.img_size": 16, "model.patch_size": 4, "model.embed_dim": 64, "model.depth": 3,
                "model.num_heads": 2, "model.head_blocks": 0, "model.tail_blocks": 1, "device": "cpu"}
    cases = []
    for method in ("sfl_v1", "sfprompt"):
        sets = {**settings, "train.method": method}
        model = method_class(method).build_model(from_dict(unflatten(sets)), 10)
        gen = torch.Generator().manual_seed(1)
        trained = {k: v.detach() + 0.05 * torch.randn(v.shape, generator=gen)
                   for k, v in model.named_parameters() if k.startswith("head.")}
        (tmp_path / method).mkdir()
        write_head_state(tmp_path / method / "head_state.safetensors", trained)
        cases.append({"method": method, "settings": sets, "run_dir": str(tmp_path / method)})
    spec = {"backbone": "tiny", "split": [0, 1], "run_labels": {}, "attacks": ["analytic", "mean_image"],
            "noise_sigma": [0.0], "rounds": ["first", "final"], "images": 4, "aux_samples": 16,
            "samples_per_client": 50, "cases": cases}
    frame, examples = evaluate(json.loads(json.dumps(spec)), log=lambda *_: None)
    servers = frame.groupby(["method", "round"]).server.agg(lambda s: sorted(set(s))).to_dict()
    assert servers == {("sfl_v1", "first"): ["all"], ("sfl_v1", "final"): ["all", "main"],
                       ("sfprompt", "first"): ["all"], ("sfprompt", "final"): ["all"]}
    psnr = frame[frame.attack == "analytic"].groupby(["method", "round", "server"]).psnr.mean()
    assert psnr[("sfl_v1", "final", "all")] > 80 and psnr[("sfl_v1", "final", "main")] < 60
    assert "sfl_v1|final|analytic|0|main" in examples and "sfl_v1|final|analytic|0" in examples
    display = privacy_table(frame).display
    assert list(display[display.Method == "SFL-V1"][["Round", "Server"]].itertuples(index=False, name=None)) == [
        ("first", "all"), ("final", "all"), ("final", "main")]


# ----------------------------------------------------------------------------------------------------------
# the defence's operating point (issue #23): the σ at which the best attack falls to the mean image + margin


def test_defence_search_brackets_the_crossing_of_a_known_score():
    """score(σ) = 40 - 20 log10 σ crosses 20 dB at σ = 10: ×4 from 0.25 (0.25, 1, 4 miss; 16 meets), then
    bisection in log σ (8 misses, √128 meets); the answer is the smallest σ that met the target."""
    from benchmark.privacy.defence import search_sigma

    score = lambda s: 40 - 20 * math.log10(s)  # noqa: E731
    sigma, trace = search_sigma(score, 20.0, 0.25, 4.0, 6)
    assert [s for s, _ in trace] == pytest.approx([0.25, 1, 4, 16, 8, math.sqrt(128)])
    assert sigma == pytest.approx(math.sqrt(128)) and score(sigma) <= 20 < score(8)
    sigma, trace = search_sigma(score, 60.0, 1.0, 4.0, 3)     # the first σ already meets it: search downwards
    assert sigma == 0.25 and [s for s, _ in trace] == pytest.approx([1, 0.25, 0.0625])   # 0.0625 misses
    assert math.isnan(search_sigma(score, -100.0, 1.0, 4.0, 3)[0])
    with pytest.raises(ValueError, match="ratio > 1"):
        search_sigma(score, 0.0, 1.0, 1.0, 3)


def test_the_frontier_names_markers_that_cover_each_other_and_no_others():
    """SFL-V1 and SFL-V2 at 0/0 (one client head, same attack) draw one marker over the other: the title must say
    so. SFPrompt at the same split but another client cost, and SFL-V1/SFL-V2 2 dB apart at 1/1, are visible."""
    from benchmark.report.privacy import covering_markers

    points = [("sfl_v1", "0/0", 0.10, 51.6), ("sfl_v2", "0/0", 0.10, 51.6), ("sfprompt", "0/0", 0.25, 51.6),
              ("sfl_v1", "0/0 σ=0.25", 0.10, 25.0), ("sfl_v2", "0/0 σ=0.25", 0.11, 25.4),
              ("sfl_v1", "1/1", 1.25, 28.0), ("sfl_v2", "1/1", 1.25, 30.0)]
    assert covering_markers(points) == [(("sfl_v1", "sfl_v2"), ["0/0", "0/0 σ=0.25"])]
    assert covering_markers([p for p in points if p[0] != "sfl_v2"]) == []
