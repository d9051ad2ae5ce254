"""Privacy attacks on smashed data (benchmark/privacy, issue #12): offline, on real images (the package-shipped
digits), real timm ViTs (random weights) and the metrics checked against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch

from benchmark.config import DataConfig
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


def test_analytic_attack_inverts_head_blocks_0_of_a_real_vit_on_real_images(digits):
    x, aux = digits
    know = ServerKnowledge(vit_b16_geometry(), MEAN, STD, aux)
    rec = ATTACKS.get("analytic")(smashed(know, x), know)
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
    with pytest.raises(UnknownNameError, match="unknown attack 'gradient'; valid: analytic, decoder, mean_image, "
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
    spec = {"backbone": "tiny", "split": [0, 0], "run_labels": {}, "attacks": ["analytic", "optimisation", "mean_image"],
            "noise_sigma": [0.0, 0.5], "rounds": ["first", "final"], "images": 4, "aux_samples": 32,
            "samples_per_client": 50, "attack_settings": {"opt_steps": 5},
            "cases": [{"method": m, "settings": {**settings, "train.method": m}, "run_dir": None}
                      for m in ("sfl_v1", "sfprompt")]}
    frame, examples = evaluate(json.loads(json.dumps(spec)), log=lambda *_: None)
    scored = frame[frame.image >= 0]
    assert set(scored.attack) == {"analytic", "optimisation", "mean_image"} and set(scored.sigma) == {0.0, 0.5}
    assert (frame[frame.image < 0].note.str.startswith("no run")).sum() == 2  # no run: final round not attacked
    sf = scored[scored.method == "sfprompt"].client_flops_pct_of_fedavg.iloc[0]
    assert 0 < sf < 100
    paths = write_outputs(frame, examples, tmp_path / "privacy" / "tiny_h0t0")
    assert all(p.is_file() for p in paths)
    table = privacy_table(frame)
    assert len(table.display) == 4 and "Noise acc. cost" in table.display
    assert any("not measured" in n for n in table.notes)
    with np.load(paths[1]) as data:
        grid = reconstruction_grid(frame, {"h0t0": {k: data[k] for k in data.files}})
    assert len(grid.axes) == 4 * 4   # originals + 3 attacks, 4 images each
    assert frontier(frame).axes


def test_smoke_profile_attacks_every_split_method_with_its_run():
    from benchmark.workflow import load_workflow_file

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
