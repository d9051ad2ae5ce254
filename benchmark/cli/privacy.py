"""``privacy``: reconstruction attacks on the smashed data of one split point."""

from __future__ import annotations

import argparse
import json

import torch

from benchmark.errors import ConfigError
from benchmark.privacy.evaluate import evaluate, write_outputs


def privacy(a: argparse.Namespace) -> int:
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--spec is not valid JSON: {exc}") from None
    frame, examples = evaluate(spec, log=(lambda *_: None) if a.quiet else print)
    paths = write_outputs(frame, examples, a.out)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0
