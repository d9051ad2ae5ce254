"""Accounting: what each party computes and what crosses the client <-> server link.

* :mod:`benchmark.accounting.flops`: training FLOPs from fvcore forward counts plus a backward rule
  (fvcore convention: 1 FLOP = 1 multiply-add), cross-checked against ``torch.utils.flop_counter``.
* :mod:`benchmark.accounting.comm`: the communication ledger (bytes = numel x element size per tensor).

Submodules are not imported here, so ``import benchmark.accounting.comm`` does not pay for fvcore.
"""
