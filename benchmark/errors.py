"""Exceptions the suite raises for bad input.

Every error a user can cause (a wrong config key, a missing dataset, a NaN loss) is a subclass of
:class:`BenchmarkError`. The CLI prints it as one line (``error: <message>``) and exits non-zero, so a
message must name the offending key, file or value and say what is allowed.
"""


class BenchmarkError(Exception):
    """Base class: a problem with the user's input or run that the CLI reports as one line."""


class ConfigError(BenchmarkError):
    """A config key is unknown, mistyped or out of range."""


class UnknownNameError(ConfigError):
    """A registry lookup (method, dataset, partition scheme, backbone) failed."""


class NameClashError(ConfigError, ValueError):
    """Two different objects claim one registry name (e.g. a user's method named like a built-in one)."""


class DatasetError(BenchmarkError):
    """A dataset is missing, incomplete or corrupt."""


class NumericError(BenchmarkError):
    """Training produced a NaN or infinite loss."""


DIVERGED = "diverged"
"""The ``metric`` of the one ``metrics.csv`` row (global model, the evaluation split, value 1) that records a
:class:`NumericError` as a result (:func:`benchmark.run.train` with ``record_divergence``); its round is the
round the loss diverged in."""
