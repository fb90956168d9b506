"""Moved to :mod:`matchzoo.tracking` (tracking sits beside sweep and compare, not under ``train/``).

This name stays an alias of that very module, so old imports and monkeypatches keep working."""

import sys

from matchzoo import tracking

sys.modules[__name__] = tracking
