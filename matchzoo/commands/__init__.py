"""Subcommands of ``python -m matchzoo``: one module each with ``HELP``, ``add_arguments`` and ``run``.

Each is a thin adapter: options from the shared vocabulary (:mod:`matchzoo.cli_args`), one library call
(:mod:`matchzoo.evaluation`, :mod:`matchzoo.probes`, :mod:`matchzoo.sweep`, ...), then printing. No command imports
another (``tests/test_commands.py``).
"""
