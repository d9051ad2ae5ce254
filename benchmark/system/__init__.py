"""The system model: from a run's ledgers (bytes, messages, FLOPs per party) to wall-clock time and energy on
real devices and networks.

* :mod:`~benchmark.system.profiles`: devices and links from ``config/system/*.yaml``, every figure cited.
* :mod:`~benchmark.system.model`: pure functions, ledgers + profile -> per-client and per-round time and
  energy; each method's critical path (each method class's ``critical_path``).
* :mod:`~benchmark.system.analysis`: time and energy to a target accuracy, the uplink crossover, paper-scale
  per-round time from the analytic accounting.
* :mod:`~benchmark.system.calibrate`: the ``local`` profile against this machine's measured compute time.

Import the submodules themselves: this package imports none of them, so the workflow's parse, which needs only
:mod:`~benchmark.system.plan` and :mod:`~benchmark.system.profiles`, does not import the model (pandas and the
method registry, with torch).
"""
