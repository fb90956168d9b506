"""Subcommands of ``python -m matchzoo``: one module each with ``HELP``, ``add_arguments`` and ``run``."""
