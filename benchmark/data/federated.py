"""The data a federated run sees: decoded images, the client partition, and seeded batching.

Images stay uint8 in memory (decoded once, see :mod:`benchmark.data.cache`); each batch is gathered,
moved to the device, resized if the cache resolution differs from the model's, and normalised with the
backbone's mean/std there, so no per-epoch PIL work happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.transforms import normalize


@dataclass
class FederatedData:
    """Train/test images, labels and the client partition of the train split.

    Attributes:
        train_images: uint8 [N, 3, H, W] (CPU).
        train_labels: int64 [N].
        test_images: uint8 [M, 3, H, W]: the evaluation set (the test split, or a validation hold-out).
        test_labels: int64 [M].
        client_indices: One sorted int64 index array into the train split per client.
        classes: Class names.
        mean, std: The backbone's normalisation constants.
        img_size: The model's input resolution (batches are resized to it when the cache differs).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    client_indices: list[np.ndarray]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int
    eval_split: str = "test"
    """What ``test_images`` hold: ``test`` (the test split) or ``validation`` (a hold-out of the training data,
    ``data.validation_fraction``); the metrics rows of the global model's evaluation are labelled with it."""

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 [B,3,H,W] -> normalised float32 on ``device`` at the model's resolution."""
        x = images.to(device, non_blocking=True)
        x = normalize(x, self.mean, self.std)
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    def batches(
        self,
        indices: np.ndarray,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        split: str = "train",
        with_index: bool = False,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (images, labels) batches of ``indices`` (shuffled when a generator is given); with
        ``with_index``, (images, labels, the batch's indices into the split) so a caller can align per-sample
        results (SFPrompt's EL2N scores from a training pass)."""
        images, labels = (self.train_images, self.train_labels) if split == "train" else (
            self.test_images, self.test_labels)
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if generator is not None:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            batch = (self.prepare(images.index_select(0, b), device), labels.index_select(0, b).to(device))
            yield (*batch, b) if with_index else batch
