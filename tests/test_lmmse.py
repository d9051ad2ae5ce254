"""The prior-based attack (issue #23): the LMMSE (Wiener) inverse of the linear client map under the auxiliary
images' patch prior, on real CIFAR-10 images from the shared mirror and a real timm ViT at the default
profile's geometry (8-px patches, 128 outputs for 192 pixels per patch; random weights)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from benchmark.config import DataConfig
from benchmark.data.cache import load_image_data
from benchmark.models.split import SplitViT
from benchmark.privacy import ATTACKS, AttackNotApplicable, ServerKnowledge, add_noise
from benchmark.privacy.attacks import patch_prior, prior_penalty
from benchmark.privacy.evaluate import to_unit
from benchmark.privacy.metrics import per_image
from benchmark.privacy.prior import JITTER, PatchPrior, from_patches, to_patches

SHARED = Path(os.environ.get("BENCHMARK_SHARED_DATA", "/work/shared/data"))
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
PATCH, DIM = 8, 128

pytestmark = pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason="shared cifar10 mirror absent")


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    """Real CIFAR-10 through the suite's loader: 16 of 64 training images (victims) and 256 test images (auxiliary),
    from the first rows of one shard per split (test-only shortcut, as tests/test_data.py takes)."""
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("cifar10")
    root = tmp / "data" / "cifar10"
    root.mkdir(parents=True)
    for split, shard, rows in (("train", "train-00000-of-00005", 64), ("test", "test-00000-of-00001", 256)):
        pq.write_table(pq.read_table(SHARED / "cifar10" / f"{shard}.parquet").slice(0, rows),
                       root / f"{split}-00000-of-00001.parquet")
    train, test = load_image_data(DataConfig(dataset="cifar10", data_root=str(tmp / "data"),
                                             cache_dir=str(tmp / "cache")), 32, 0)
    return to_unit(train.images[:16], 32), to_unit(test.images, 32)


def vit_s32_geometry(head_blocks: int = 0) -> SplitViT:
    """A real timm ViT at the default profile's 0/0 geometry: 32 px, 8-px patches, 128 outputs per 192-pixel
    patch (random weights, 3 blocks), with head prompt tokens (the attacks drop them)."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=PATCH, embed_dim=DIM,
                            depth=3, num_heads=4, num_classes=10)
    model = SplitViT(vit, head_blocks, 1, prompt_len=2).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def received(know: ServerKnowledge, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    with torch.no_grad():
        return add_noise(know.head(x), sigma, torch.Generator().manual_seed(0))


def psnrs(x: torch.Tensor, rec: torch.Tensor) -> np.ndarray:
    return np.array([p for p, _ in per_image(x, rec)])


def principal(prior: PatchPrior, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k eigenvalues, their eigenvectors as columns [P, k]) of the prior's covariance, largest first."""
    vals, vecs = torch.linalg.eigh(prior.cov)
    return vals.flip(0)[:k], vecs.flip(1)[:, :k]


# ----------------------------------------------------------------------------------------------------------
# closed form: W = the prior's top principal directions


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_lmmse_with_the_priors_principal_directions_is_the_closed_form_wiener_filter(cifar10, sigma):
    """W = U_kᵀ (orthonormal rows, the top k eigenvectors of Σ): K = U_k Λ_k (Λ_k + σ² I)⁻¹, so
    x̂ = μ + U_k diag(λ / (λ + σ²)) U_kᵀ (y - U_kᵀ μ); at σ = 0 the projection μ + U_k U_kᵀ (x - μ)."""
    victims, aux = cifar10
    know = ServerKnowledge(vit_s32_geometry(), MEAN, STD, aux)
    prior = patch_prior(know)
    lam, u = principal(prior, DIM)
    lam = lam + JITTER * torch.trace(prior.cov) / prior.cov.shape[0]   # the ridge shifts every eigenvalue alike
    x = to_patches(know.normalize(victims.double()), PATCH).reshape(-1, u.shape[0])
    y = x @ u + sigma * torch.randn(len(x), DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = prior.mean + ((y - prior.mean @ u) * (lam / (lam + sigma ** 2))) @ u.T
    torch.testing.assert_close(prior.lmmse(u.T, y, sigma), expected, rtol=0, atol=1e-8)


def test_lmmse_is_exact_up_to_the_discarded_variance(cifar10):
    """On the prior's own patches, with W = U_kᵀ and no noise, the mean squared error per patch equals the
    variance of the discarded directions, Σ_{i>k} λ_i ((n-1)/n: the covariance's unbiased denominator)."""
    _, aux = cifar10
    know = ServerKnowledge(vit_s32_geometry(), MEAN, STD, aux)
    prior = patch_prior(know)
    vals = torch.linalg.eigvalsh(prior.cov).flip(0)
    patches = to_patches(know.normalize(aux.double()), PATCH).reshape(-1, prior.cov.shape[0])
    for k in (16, 64, DIM):
        _, u = principal(prior, k)
        mse = (prior.lmmse(u.T, patches @ u, 0.0) - patches).pow(2).sum(1).mean()
        n = len(patches)
        assert float(mse) == pytest.approx(float(vals[k:].sum()) * (n - 1) / n, rel=1e-6)


def test_the_attack_on_a_principal_patch_embedding_returns_the_projection(cifar10):
    """End to end through the registry: a ViT whose patch embedding is the prior's top 128 directions (bias
    and position embedding random, prompts present) gives μ + U Uᵀ (x - μ) per patch, clipped to [0, 1]."""
    victims, aux = cifar10
    model = vit_s32_geometry()
    know = ServerKnowledge(model, MEAN, STD, aux)
    _, u = principal(patch_prior(know), DIM)
    proj = model.head.patch_embed.proj
    with torch.no_grad():
        proj.weight.copy_(u.T.reshape(proj.weight.shape).float())
        proj.bias.normal_()
    prior = patch_prior(know)  # the prior does not depend on the head
    x = to_patches(know.normalize(victims.double()), PATCH)
    w = proj.weight.double().reshape(DIM, -1)   # float32-rounded U_kᵀ: the projection onto its row space
    expected = prior.mean + (x - prior.mean) @ torch.linalg.pinv(w) @ w
    image = know.unnormalize(from_patches(expected, PATCH, (32, 32))).clamp(0, 1)
    rec = ATTACKS.get("lmmse")(received(know, victims), know)
    torch.testing.assert_close(rec.double(), image, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# against minimum norm, with and without the defence's noise


def test_lmmse_is_never_worse_than_minimum_norm_on_real_images(cifar10):
    """Same observation, same W: LMMSE beats minimum-norm least squares (``analytic``) on every image, by tens
    of dB on average (192 pixels -> 128 outputs per patch)."""
    victims, aux = cifar10
    know = ServerKnowledge(vit_s32_geometry(), MEAN, STD, aux)
    z = received(know, victims)
    prior_based, min_norm = psnrs(victims, ATTACKS.get("lmmse")(z, know)), psnrs(victims, ATTACKS.get("analytic")(z, know))
    assert (prior_based >= min_norm).all(), (prior_based - min_norm).min()
    assert prior_based.mean() > 45 and (prior_based - min_norm).mean() > 20, (prior_based.mean(), min_norm.mean())


def test_lmmse_uses_the_noise_level_and_stays_above_minimum_norm_under_noise(cifar10):
    """With the defence's noise (σ = 0.5 activation units, about the smashed tokens' rms), weighing the noise
    against the prior (σ² I) beats the noise-blind estimate on average, and both beat minimum norm per image."""
    victims, aux = cifar10
    sigma = 0.5
    aware = ServerKnowledge(vit_s32_geometry(), MEAN, STD, aux, sigma=sigma)
    blind = ServerKnowledge(aware.model, MEAN, STD, aux, sigma=0.0)
    z = received(aware, victims, sigma)
    noise_aware, noise_blind = psnrs(victims, ATTACKS.get("lmmse")(z, aware)), psnrs(victims, ATTACKS.get("lmmse")(z, blind))
    min_norm = psnrs(victims, ATTACKS.get("analytic")(z, aware))
    assert noise_aware.mean() > noise_blind.mean() + 1, (noise_aware.mean(), noise_blind.mean())
    assert (noise_aware >= min_norm).all(), (noise_aware - min_norm).min()


def test_lmmse_refuses_a_non_linear_head_naming_itself(cifar10):
    victims, aux = cifar10
    know = ServerKnowledge(vit_s32_geometry(head_blocks=1), MEAN, STD, aux)
    with pytest.raises(AttackNotApplicable, match="^lmmse: the client map has 1 transformer block"):
        ATTACKS.get("lmmse")(received(know, victims), know)


def test_a_prior_needs_two_patches():
    with pytest.raises(ValueError, match="at least 2 patches, got 1"):
        PatchPrior.fit(torch.zeros(1, 1, 12))


def test_the_optimisation_attacks_prior_term_is_the_gaussian_negative_log_likelihood_per_pixel(cifar10):
    """prior_penalty(x) against torch's MultivariateNormal (Cholesky, independent of the precision the attack
    inverts): mean over patches of (−log p(x_p) − ½ log det(2πΣ)) / P, on real CIFAR-10 images; natural images
    score far lower than noise of the same pixel range."""
    victims, aux = cifar10
    know = ServerKnowledge(vit_s32_geometry(head_blocks=1), MEAN, STD, aux)
    prior = patch_prior(know)
    n = prior.cov.shape[0]
    cov = prior.cov + JITTER * torch.trace(prior.cov) / n * torch.eye(n, dtype=torch.float64)
    gauss = torch.distributions.MultivariateNormal(prior.mean, covariance_matrix=cov)
    patches = to_patches(know.normalize(victims.double()), PATCH)
    want = (-gauss.log_prob(patches) - 0.5 * torch.logdet(2 * math.pi * cov)).mean() / n
    got = prior_penalty(know)(victims)
    assert float(got) == pytest.approx(float(want), rel=1e-4)
    noise = torch.rand(victims.shape, generator=torch.Generator().manual_seed(0))
    assert float(prior_penalty(know)(noise)) > 10 * float(got)
