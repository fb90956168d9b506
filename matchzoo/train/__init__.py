"""The shared trainer: settings (``train.*``, split into the parts each consumer needs), optimiser factories,
terms, loop, callbacks, checkpoints. It never imports the gin layer (:mod:`matchzoo.config`); the run layer
(:mod:`matchzoo.run`) parses, builds and drives it."""

from matchzoo.train.settings import TrainSettings
from matchzoo.train.terms import Term

__all__ = ["TrainSettings", "Term"]
