"""The command line's verbs: each module holds the runners of verbs that cost the same to import.

``python -m benchmark`` (:mod:`benchmark.__main__`) parses the arguments and imports a verb's module only when
that verb runs, so ``--help`` and ``data`` never pay for torch.
"""
