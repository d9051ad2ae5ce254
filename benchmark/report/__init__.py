"""Tables, figures, claims and the manifest, rendered from a workflow's results folder.

* :mod:`~benchmark.report.load`: read ``results/`` (``grid.json``, run folders, accounting, partitions) into
  tidy DataFrames (:class:`~benchmark.report.load.Results`); the only module that reads files.
* :mod:`~benchmark.report.tables`, :mod:`~benchmark.report.claims`: pure, DataFrame in, Table out.
* :mod:`~benchmark.report.figures`: pure, DataFrame in, matplotlib Figure out.
* :mod:`~benchmark.report.build`: what each output is drawn from, writing files, ``manifest.json``.
"""
