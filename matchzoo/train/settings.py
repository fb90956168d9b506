"""``train.*``: every setting of a training run, bound from gin (one configurable, so all of them land
in the operative config and in the MLflow params)."""
from __future__ import annotations

from typing import Optional, Sequence

import gin

from matchzoo.data.datasets import ImageDataset
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator
from matchzoo.spaces.base import FeatureSpace
from matchzoo.train.terms import Term


@gin.configurable("train", module="train")
class TrainSettings:
    def __init__(
        self,
        dataset: ImageDataset = gin.REQUIRED,
        generator: Generator = gin.REQUIRED,
        terms: Sequence[Term] = gin.REQUIRED,
        eval_spaces: Sequence[FeatureSpace] = (),
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 1e-3,
        betas: tuple = (0.5, 0.999),
        ema_decay: float = 0.99,
        seed: int = 0,
        device: str = "auto",
        eval_every: int = 250,
        eval_samples: Optional[int] = None,
        stability_every: Optional[int] = None,
        stability_resamples: int = 8,
        log_every: int = 25,
        checkpoint_every: int = 250,
        experiment: str = "matchzoo",
        run_name: Optional[str] = None,
        run_dir: Optional[str] = None,
        feature_batch_size: int = 256,
        progress: bool = True,
        tf32: bool = True,
        compile_spaces: bool = False,
        num_threads: Optional[int] = None,
    ):
        if not terms:
            raise MatchzooError("train.terms is empty; give at least one @term() (a feature space, an objective and a weight)")
        for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                            ("log_every", log_every), ("checkpoint_every", checkpoint_every)):
            if int(value) < 1:
                raise MatchzooError(f"train.{name} must be a positive integer, got {value}")
        if batch_size < 2:
            raise MatchzooError("train.batch_size must be at least 2 (statistics need two samples)")
        self.dataset, self.generator, self.terms = dataset, generator, list(terms)
        self.eval_spaces = list(eval_spaces)
        self.steps, self.batch_size, self.lr, self.betas = int(steps), int(batch_size), float(lr), tuple(betas)
        self.ema_decay, self.seed, self.device = float(ema_decay), int(seed), device
        self.eval_every, self.eval_samples = int(eval_every), eval_samples
        # matching stability at every evaluation by default (None); 0 turns it off
        self.stability_every = self.eval_every if stability_every is None else int(stability_every)
        self.stability_resamples = int(stability_resamples)
        self.log_every, self.checkpoint_every = int(log_every), int(checkpoint_every)
        self.experiment, self.run_name, self.run_dir = experiment, run_name, run_dir
        self.feature_batch_size, self.progress = int(feature_batch_size), bool(progress)
        self.tf32, self.compile_spaces = bool(tf32), bool(compile_spaces)
        if num_threads is not None and int(num_threads) < 1:
            raise MatchzooError(f"train.num_threads must be a positive integer or None, got {num_threads}")
        self.num_threads = None if num_threads is None else int(num_threads)
