"""Reconstruction quality: PSNR and SSIM per image (scikit-image), and mean ± 95% confidence intervals.

Library: **scikit-image** (``skimage.metrics``). Why: it is the reference implementation of SSIM (Wang et al.
2004) that reconstruction-attack papers report, it scores one NumPy image at a time (per-image values, no
batch reduction to undo), and it does not depend on the torch build (torchmetrics ties its versions to
torch's and reduces over a batch by default).

Units and conventions:

* Images are float ``[3, H, W]`` in **[0, 1] pixel units**; PSNR in **dB** with ``data_range = 1``, i.e.
  ``10 · log10(1 / MSE)``. Departure: PSNR is capped at :data:`PSNR_CAP` (100 dB, MSE = 1e-10), so an exact
  reconstruction (MSE = 0, PSNR = ∞) keeps means and intervals finite.
* SSIM: scikit-image's defaults (7×7 uniform window, K1 = 0.01, K2 = 0.03), ``data_range = 1``, averaged over
  the channels (``channel_axis``); the window shrinks to the largest odd side that fits smaller images.
* Intervals: Student-t 95% confidence interval of the mean over images (``scipy.stats``), half-width
  ``t_{0.975, n-1} · s / sqrt(n)``; NaN for fewer than two images.
"""

from __future__ import annotations


import numpy as np
import torch

from benchmark.stats import mean_ci  # noqa: F401  (one home for confidence intervals)

PSNR_CAP = 100.0
"""dB; the PSNR of an exact reconstruction is reported as this (MSE below 1e-10)."""


def _hwc(x: torch.Tensor | np.ndarray) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected one image [C, H, W], got shape {a.shape}")
    return np.moveaxis(a, 0, -1)


def psnr(original: torch.Tensor | np.ndarray, reconstruction: torch.Tensor | np.ndarray) -> float:
    """PSNR in dB of one [C, H, W] image pair in [0, 1] units (capped at :data:`PSNR_CAP`)."""
    from skimage.metrics import mean_squared_error  # deferred: scikit-image, only scoring images

    mse = mean_squared_error(_hwc(original), _hwc(reconstruction))
    if mse <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    from skimage.metrics import peak_signal_noise_ratio  # deferred: scikit-image, only scoring images

    return float(peak_signal_noise_ratio(_hwc(original), _hwc(reconstruction), data_range=1.0))


def ssim(original: torch.Tensor | np.ndarray, reconstruction: torch.Tensor | np.ndarray) -> float:
    """SSIM of one [C, H, W] image pair in [0, 1] units (channels averaged)."""
    from skimage.metrics import structural_similarity  # deferred: scikit-image, only scoring images

    a, b = _hwc(original), _hwc(reconstruction)
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=win))


def per_image(originals: torch.Tensor, reconstructions: torch.Tensor) -> list[tuple[float, float]]:
    """[(PSNR dB, SSIM)] for each image of two ``[B, C, H, W]`` batches in [0, 1]."""
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions {tuple(reconstructions.shape)} differ")
    return [(psnr(o, r), ssim(o, r)) for o, r in zip(originals, reconstructions)]
