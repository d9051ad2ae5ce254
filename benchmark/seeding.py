"""One seed feeds everything, split into independent streams with ``numpy.random.SeedSequence``.

Streams are addressed by name (``"partition"``, ``"init"``, ``"client_sampling"``, ...) so adding a new
consumer never shifts the numbers another consumer draws.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def seed_for(seed: int, *names: str | int) -> int:
    """A 32-bit seed for the stream ``names`` (e.g. ``seed_for(0, "client", 3, "round", 2)``)."""
    keys = [_key(n) if isinstance(n, str) else int(n) for n in names]
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def rng(seed: int, *names: str | int) -> np.random.Generator:
    return np.random.default_rng(seed_for(seed, *names))


def torch_generator(seed: int, *names: str | int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed_for(seed, *names))
    return g
