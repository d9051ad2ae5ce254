"""Baseline methods and references, each a :class:`benchmark.federation.method.Method` registered by name.

Importing this package registers ``fedavg``, ``fedprompt``, ``sfl_v1``, ``sfl_v2`` and the reference
``linear_probe``; :mod:`benchmark.methods` is the one place that imports it. Each module has a README card
beside it (paper, what is implemented, departures, hyper-parameters).
"""

from baselines import fedavg, fedprompt, references, splitfed  # noqa: F401
