"""Atomic file output and run provenance (package versions, device, git revision).

Every result file is written to a temporary file in the same folder and renamed into place, so a run
killed at any point leaves either the old file, or nothing, never a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
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
    import torch  # deferred: torch, ~3 s

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_revision": git_revision(Path(__file__).resolve().parent),
        "device": device,
        "torch_threads": threads,
        "seed": seed,
        "config_hash": config_hash,
        "numerics": numerics_fingerprint(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["cuda_device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info


NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR", "OPENBLAS_CORETYPE")
"""Environment variables that choose a kernel path or a thread count, and so can move a float result."""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numerics_fingerprint() -> dict[str, Any]:
    """What decides a run's floating-point path on this machine, so two results folders can say why they differ.

    The CPU model, the instruction set torch's kernels dispatch to (``torch.backends.cpu.get_cpu_capability``:
    ``AVX2``, ``AVX512``, ...), torch's intra- and inter-op thread counts, the BLAS / LAPACK / oneDNN build
    (from ``torch.__config__.show()``) and the environment variables that override any of these.
    """
    import torch  # deferred: deferred so that importing benchmark.io stays cheap for the report and the CLI

    build = torch.__config__.show()

    def find(pattern: str) -> str:
        match = re.search(pattern, build)
        return match.group(1).strip() if match else "unknown"

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "blas": find(r"BLAS_INFO=([^,\n]+)"),
        "lapack": find(r"LAPACK_INFO=([^,\n]+)"),
        "mkl": find(r"Math Kernel Library Version ([^\n]+?) for"),
        "onednn": find(r"MKL-DNN (v[0-9.]+)"),
        "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }
