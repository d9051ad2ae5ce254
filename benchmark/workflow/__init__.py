"""The Snakemake workflow's logic, one module per concern (see :mod:`benchmark.workflow.grid`).

Import from the module that holds a name: :mod:`benchmark.workflow.grid` (``load_workflow``, ``Workflow``),
:mod:`benchmark.workflow.names` (roles, variant and file names, tables and figures), and so on. This file imports
nothing, so reading the vocabulary (:mod:`.names`) does not build the grid machinery.
"""
