"""The shared trainer: settings (``train.*``), terms, loop, callbacks, checkpoints, MLflow tracking."""
from matchzoo.train.settings import TrainSettings
from matchzoo.train.terms import Term

__all__ = ["TrainSettings", "Term"]
