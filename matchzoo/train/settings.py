"""``train.*``: every setting of a training run, bound from gin (one configurable, so all of them land
in the operative config and in the MLflow params)."""
from __future__ import annotations

import math
import numbers
import os
from typing import Optional, Sequence

import gin

from matchzoo import validate as check
from matchzoo.data.datasets import ImageDataset
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import Generator
from matchzoo.spaces.base import FeatureSpace
from matchzoo.train.terms import Term

MAX_STEPS = 10**9  # more is a typo (1e12), not a run: it would never finish and overflows schedules
MAX_BATCH = 2**20
IMAGE_COPIES = 4  # a generated batch, its gradient, and both again resized for a space: a floor, not an estimate


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
        self.dataset = check.instance("train.dataset", dataset, ImageDataset, "a dataset such as @digits()")
        self.generator = check.instance("train.generator", generator, Generator, "a generator such as @mlp()")
        self.terms = check.instances("train.terms", terms, Term, "loss terms", "[@term()]")
        if not self.terms:
            raise MatchzooError("train.terms is empty; give at least one @term() (a feature space, an objective and a weight)")
        self.eval_spaces = check.instances("train.eval_spaces", eval_spaces, FeatureSpace, "feature spaces",
                                           "[@pixels(), @digits_ssl()]")
        self.steps = check.positive_int("train.steps", steps, MAX_STEPS)
        self.batch_size = self._batch_size(batch_size)
        self.lr = check.positive_real("train.lr", lr)
        # Adam needs each beta in [0, 1): beta = 1 never forgets its first moment
        self.betas = check.pair("train.betas", betas, check.fraction, False, True)
        self.ema_decay = check.fraction("train.ema_decay", ema_decay, open_high=True)  # 1 would never follow the generator
        self.seed = check.seed("train.seed", seed)
        self.device = check.device("train.device", device, allow_auto=True)
        self.eval_every = check.positive_int("train.eval_every", eval_every)
        self.eval_samples = None if eval_samples is None else check.integer("train.eval_samples", eval_samples, 2)
        # matching stability at every evaluation by default (None); 0 turns it off
        self.stability_every = (self.eval_every if stability_every is None
                                else check.non_negative_int("train.stability_every", stability_every))
        self.stability_resamples = check.integer("train.stability_resamples", stability_resamples, 2)
        self.log_every = check.positive_int("train.log_every", log_every)
        self.checkpoint_every = check.positive_int("train.checkpoint_every", checkpoint_every)
        self.experiment, self.run_name, self.run_dir = experiment, run_name, run_dir
        self.feature_batch_size = check.positive_int("train.feature_batch_size", feature_batch_size, MAX_BATCH)
        self.progress = check.instance("train.progress", progress, bool, "True or False")
        self.tf32 = check.instance("train.tf32", tf32, bool, "True or False")
        self.compile_spaces = check.instance("train.compile_spaces", compile_spaces, bool, "True or False")
        self.num_threads = None if num_threads is None else check.positive_int("train.num_threads", num_threads)

    def _batch_size(self, value) -> int:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 2:
            raise MatchzooError(f"train.batch_size must be at least 2 (statistics need two samples), got {value}")
        batch_size = check.integer("train.batch_size", value, 2, MAX_BATCH)
        per_process = -(-batch_size // max(1, int(os.environ.get("WORLD_SIZE", "1"))))  # torchrun splits the batch
        needed = per_process * self._largest_image() * 4 * IMAGE_COPIES  # float32 bytes
        available = check.memory_bytes()
        if available is not None and needed > available:
            raise MatchzooError(
                f"train.batch_size = {batch_size} needs at least {needed / 2**30:.1f} GiB for its images alone, more "
                f"than this machine's {available / 2**30:.1f} GiB of memory; lower train.batch_size")
        return batch_size

    def _largest_image(self) -> int:
        """Elements of the largest image a batch item becomes: the generator's output or a space's resized input."""
        sizes = [math.prod(getattr(self.generator, "image_shape", (1,)))]
        sizes += [3 * term.space.input_size ** 2 for term in self.terms if term.space.input_size]
        return max(sizes)
