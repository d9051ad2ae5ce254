"""The server's image prior: patch statistics of the public auxiliary images, and the linear MMSE (Wiener)
inverse of a linear client map under that prior (issue #23).

A natural-image patch is far from isotropic: in CIFAR-10, 8×8×3 = 192-pixel patches put almost all their
variance in a few dozen directions. A client map that keeps fewer outputs than pixels per patch (128 of 192
for ``vit_s32``) hides only the directions it drops, and an attacker who knows the prior recovers those from
the ones it keeps. Minimum-norm least squares sets the dropped directions to zero; the LMMSE estimate sets them
to their conditional mean given the observation.

Conventions (every tensor float64):

* A patch is a row vector of ``P = C·p·p`` values in the backbone's **normalised** pixel units (``(x - mean) /
  std``), ordered (channel, row, column), the order of ``Conv2d.weight.reshape(D, P)`` and ``F.unfold``.
* The observation of a patch is ``y = W x + n`` with ``W`` of shape ``[D, P]`` (activation units; the
  patch embedding's weight, its bias and the position embedding already subtracted) and ``n ~ N(0, σ² I)``
  the defence's noise (σ in activation units, 0: none).

The prior is **pooled over patch positions** (one mean and one covariance for every position): stationary
image statistics, and 16× more samples than a per-position prior (256 auxiliary images give 4,096 patches
for a 192×192 covariance instead of 256). Measured on 256 CIFAR-10 test images against 16 training images
(random 8-px, d128 patch embedding): pooled 51.3 dB mean PSNR, per-position mean with pooled covariance
51.2 dB, per-position mean and covariance 48.7 dB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

JITTER = 1e-6
"""Ridge added to the covariance, relative to its mean eigenvalue (``trace / P``): keeps ``W Σ Wᵀ`` invertible
at σ = 0 when the auxiliary patches leave a direction without variance; 1e-6 moves the estimate by far less
than the 8-bit quantisation of the images."""


def to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, N, C·p·p]``: the non-overlapping ``patch``-sided patches, row-major over the
    grid, each in (channel, row, column) order (the patch embedding's order)."""
    return F.unfold(x, patch, stride=patch).transpose(1, 2)


def from_patches(patches: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`to_patches`: ``[B, N, C·p·p]`` -> ``[B, C, H, W]`` with ``(H, W) = size``."""
    return F.fold(patches.transpose(1, 2), size, patch, stride=patch)


@dataclass(frozen=True)
class PatchPrior:
    """Gaussian patch prior: mean ``[P]`` and covariance ``[P, P]`` (normalised pixel units, float64)."""

    mean: torch.Tensor
    cov: torch.Tensor

    @classmethod
    def fit(cls, patches: torch.Tensor) -> "PatchPrior":
        """Sample mean and covariance (``n - 1`` denominator) of ``patches`` ``[..., P]``, pooled over every
        leading axis (images and positions)."""
        flat = patches.reshape(-1, patches.shape[-1]).double()
        if len(flat) < 2:
            raise ValueError(f"a patch prior needs at least 2 patches, got {len(flat)}")
        return cls(flat.mean(0), torch.cov(flat.T))

    def gain(self, w: torch.Tensor, sigma: float) -> torch.Tensor:
        """The LMMSE gain ``K = Σ Wᵀ (W Σ Wᵀ + σ² I)⁻¹`` ``[P, D]`` for observations ``y = W x + N(0, σ² I)``
        (Σ with the :data:`JITTER` ridge)."""
        w = w.double()
        p = self.cov.shape[0]
        cov = self.cov + JITTER * torch.trace(self.cov) / p * torch.eye(p, dtype=torch.float64)
        s_wt = cov @ w.T                                                     # [P, D]
        gram = w @ s_wt + float(sigma) ** 2 * torch.eye(w.shape[0], dtype=torch.float64)
        return torch.linalg.solve(gram, s_wt.T).T                          # gram is symmetric: (G⁻¹ W Σ)ᵀ = Σ Wᵀ G⁻¹

    def lmmse(self, w: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
        """``x̂ = μ + K (y - W μ)`` for observations ``y`` ``[M, D]`` -> patch estimates ``[M, P]``."""
        w = w.double()
        return self.mean + (y.double() - self.mean @ w.T) @ self.gain(w, sigma).T
