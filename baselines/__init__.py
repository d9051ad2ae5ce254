"""Baseline methods, each a :class:`benchmark.federation.method.Method` registered by name.

Importing this package registers ``fedavg``, ``fedprompt``, ``sfl_v1`` and ``sfl_v2``. Each module has a
README card beside it (paper, what is implemented, departures, hyper-parameters).
"""

from baselines import fedavg, fedprompt, splitfed  # noqa: F401
