"""Atomic file output and run provenance (package versions, device, git revision).

Every result file is written to a temporary file in the same folder and renamed into place, so a run
killed at any point leaves either the old file, or nothing, never a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

PROVENANCE_PACKAGES = (
    "torch", "torchvision", "timm", "datasets", "flwr-datasets", "fvcore", "numpy", "pandas", "safetensors",
)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def git_revision(cwd: str | Path | None = None) -> str:
    """The git revision of the working tree (``+dirty`` if modified), or ``unknown`` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def environment(device: str, seed: int, config_hash: str, threads: int) -> dict[str, Any]:
    """What ``env.json`` records next to every run."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_revision": git_revision(Path(__file__).resolve().parent),
        "device": device,
        "torch_threads": threads,
        "seed": seed,
        "config_hash": config_hash,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["cuda_device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info
