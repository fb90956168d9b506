"""The shared training loop: one generator, a weighted sum of (space, objective) terms, an optimiser, EMA.

One step: noise (and, for a class-conditional generator, labels: :mod:`matchzoo.train.labels`) -> generator ->
every term's space -> objective against a real minibatch -> backward -> gradient norm (clipped to
``train.grad_clip_norm`` when set) -> optimiser step -> learning-rate schedule step -> every EMA. With
``train.precision = 'bf16'`` the generator and the spaces run under ``torch.autocast`` (bfloat16); features
are cast back to float32 before the objectives, whose statistics stay float32/float64.

A term whose objective trains from statistics alone (``fd.reference_stats``; ``needs_real_samples`` False) gets
``real=None`` and no real features are extracted for it; with ``train.dataset = None`` every term must be one.
With ``train.real_pool_size`` real minibatches come from a fixed pool of train features (and class-matched ones
from the pooled items of each class), while ``prepare_reference`` still sees every train feature
(:mod:`matchzoo.train.features`).

Everything else -- evaluation, checkpoints, MLflow -- is a callback (:mod:`matchzoo.train.callbacks`).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Optional, Sequence

import torch
from tqdm.auto import tqdm

from matchzoo import keys, signals, stats_files
from matchzoo.errors import MatchzooError
from matchzoo.generators.base import check_generator_output
from matchzoo.keys import TRAIN_GRAD_NORM, TRAIN_LR
from matchzoo.train import distributed, init_from
from matchzoo.train.ema import EMA
from matchzoo.train.features import RealFeatures
from matchzoo.train.per_class import check_objective, per_class_loss
from matchzoo.train.real_labels import PoolLabels, label_source
from matchzoo.train.settings import Runtime, TrainSettings


class NonFiniteError(MatchzooError):
    """The loss or a gradient became NaN/inf; the run stops without checkpointing the broken state (the
    caller says which checkpoint, if any, is left)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise MatchzooError(f"train.device = {name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MatchzooError(f"train.device = {name!r} but CUDA is not available; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise MatchzooError(f"train.device = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise MatchzooError(f"train.device = {name!r} but MPS is not available; use 'cpu' or 'auto'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise MatchzooError(
            f"train.device = {name!r}: matchzoo trains on 'cpu', 'cuda' or 'mps'; use 'auto' to pick one"
        )
    return device


class Trainer:
    """``resuming``: the run continues from a checkpoint loaded right after (:meth:`load_state_dict`), so
    ``train.init_from`` is not read (the checkpoint's weights win)."""

    def __init__(self, settings: TrainSettings, callbacks: Sequence[Any] = (), resuming: bool = False):
        self.settings = settings
        setup, optimization, runtime = settings.setup, settings.optimization, settings.runtime
        self.dist = distributed.init_from_env(
            "cuda" if runtime.device != "cpu" and torch.cuda.is_available() else "cpu"
        )
        self.device = resolve_device(runtime.device, self.dist.local_rank)
        if optimization.batch_size % self.dist.world_size:
            raise MatchzooError(
                f"train.batch_size = {optimization.batch_size} is the global batch and must be "
                f"divisible by the {self.dist.world_size} processes"
            )
        self.local_batch = optimization.batch_size // self.dist.world_size
        self.labels = label_source(setup)
        self.generator = setup.generator.to(self.device)
        self.init_from_sha256: Optional[str] = None  # SHA-256 of the train.init_from file loaded by this process
        self.inherited_spaces: list[str] = []  # spaces the init_from weights were optimised in (checkpoint-saved)
        if setup.init_from is not None and not resuming:
            self.init_from_sha256, self.inherited_spaces = init_from.load_into(self.generator, setup.init_from)
        self.model = self.generator
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.generator, device_ids=device_ids)
        self.terms = setup.terms
        self.per_class_matching = setup.per_class_matching
        if self.per_class_matching:
            for term in self.terms:
                check_objective(term)
        self._configure_gpu_path(runtime)
        for term in self.terms:
            term.space.to(self.device)
            term.objective.to(self.device)
            if hasattr(term.objective, "use_space"):  # a statistics file is checked against its space, before step 0
                term.objective.use_space(term.space)
        self.optimizer = optimization.build_optimizer(self.generator.parameters())
        self.schedule = optimization.build_schedule(self.optimizer)
        self.grad_clip_norm, self.precision = optimization.grad_clip_norm, optimization.precision
        self.critic_optimizers: list = [None] * len(self.terms)  # built in prepare(), once the reference is known
        self.emas = [EMA(self.generator, decay) for decay in optimization.ema_decay]
        self.ema = self.emas[0]  # the primary EMA: evaluated during training, `generator_ema` in the checkpoint
        # per-rank noise and real minibatches; the global RNG (objectives' own randomness) is identical on all ranks
        self.noise_rng = torch.Generator().manual_seed(setup.seed + 1 + 1000 * self.dist.rank)
        self.real_rng = torch.Generator().manual_seed(setup.seed + 2 + 1000 * self.dist.rank)
        self.real = RealFeatures(
            setup.dataset,
            runtime.feature_batch_size,
            self.device,
            runtime.progress,
            heldout_dataset=setup.heldout_dataset,
            pool_size=setup.real_pool_size,
            pool_seed=setup.seed,
        )
        self.pool_labels = PoolLabels(self.labels, setup.dataset, self.real.pool_index(), setup.real_pool_size)
        # the images every term's space sees: the dataset's, or (training from statistics) the generator's own
        self.image_shape = self.real.image_shape or getattr(setup.generator, "image_shape", None)
        self.callbacks = list(callbacks)
        self.step = 0

    def _configure_gpu_path(self, runtime: Runtime) -> None:
        """TF32 matmuls on CUDA (statistics stay float64, so metrics are unaffected) and optional
        ``torch.compile`` of each training space's encoder. Nothing changes on CPU unless asked."""
        if runtime.num_threads is not None:
            # small CPU models (the offline configs) run fastest single-threaded: thread barriers cost
            # more than 64x64 kernels gain, and far more when other processes share the cores
            torch.set_num_threads(runtime.num_threads)
        if self.device.type == "cuda" and runtime.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if runtime.compile_spaces:
            for space in {id(t.space): t.space for t in self.terms}.values():
                space.encode = torch.compile(space.encode)

    def _critic_optimizer(self, objective) -> Optional[torch.optim.Optimizer]:
        if not objective.has_critic:
            return None
        return torch.optim.Adam(
            objective.critic_parameters(),
            lr=getattr(objective, "critic_lr", 2e-4),
            betas=getattr(objective, "critic_betas", (0.0, 0.99)),
        )

    def prepare(self) -> None:
        """Real training features per term space (once), handed to each objective as its reference -- every train
        feature, with or without a pool; none for an objective that trains from statistics alone."""
        for term in self.terms:
            if stats_files.needs_real_samples(term.objective):
                term.objective.prepare_reference(self.real.train(term.space))
        self.critic_optimizers = [self._critic_optimizer(term.objective) for term in self.terms]

    def sample_real(self, term, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A global real minibatch: each rank draws its shard, all ranks see the concatenation. With
        ``train.class_matched_real`` item i of the shard has class ``labels[i]`` (the local fake labels)."""
        pool = self.real.pool(term.space)
        if labels is not None and self.labels.class_matched:
            index = self.pool_labels.real_indices(labels, self.real_rng)
        else:
            index = torch.randint(pool.shape[0], (self.local_batch,), generator=self.real_rng)
        # a pool too large for the device stays on the CPU: the minibatch is gathered there, then copied over
        return distributed.gather(pool[index.to(pool.device)].to(self.device))

    def autocast(self):
        """bfloat16 autocast on the trainer's device for ``train.precision = 'bf16'``; nothing for 'fp32'."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sample_inputs(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The local noise and (for a class-conditional generator) labels of one step, from the noise RNG."""
        noise = self.generator.sample_noise(self.local_batch, generator=self.noise_rng).to(self.device)
        return noise, self.labels.fake(self.generator, self.local_batch, self.noise_rng)

    def generate(self, noise: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        with self.autocast():
            return self.model(noise) if labels is None else self.model(noise, labels.to(self.device))

    def features(self, term, images: torch.Tensor) -> torch.Tensor:
        """The global ``(B_global, D)`` features of a term, gradient to the local shard; autocast's bfloat16
        features become float32 before any objective sees them (other dtypes pass unchanged)."""
        with self.autocast():
            local = term.space(images)
        if local.dtype in (torch.bfloat16, torch.float16):
            local = local.float()
        return distributed.gather_with_grad(local)

    def train_step(self) -> dict[str, float]:
        noise, labels = self.sample_inputs()
        images = self.generate(noise, labels)
        if self.step == 0 and self.image_shape is not None:
            check_generator_output(images, self.image_shape, type(self.generator).__name__)
        total = torch.zeros((), device=self.device)
        logs: dict[str, float] = {}
        for term, critic_optimizer in zip(self.terms, self.critic_optimizers):
            fake = self.features(term, images)
            if critic_optimizer is not None:
                logs.update(self.critic_update(term, critic_optimizer, fake.detach(), labels))
            real = self.sample_real(term, labels) if stats_files.needs_real_samples(term.objective) else None
            if self.per_class_matching:  # labels of the global batch: fake item i and real item i share them
                out = per_class_loss(term.objective, fake, real, distributed.gather(labels.to(self.device)))
            else:
                out = term.objective(fake, real)
            if not torch.isfinite(out.loss):
                raise NonFiniteError(
                    f"loss of term {term.name} (objective {type(term.objective).__name__}, space "
                    f"{term.space.name}) is {float(out.loss.detach())} at step {self.step + 1}"
                )
            total = total + term.weight * out.loss.float()
            logs.update({keys.train_key(term.name, key): value for key, value in out.logs.items()})
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        logs[TRAIN_GRAD_NORM] = self._clip_gradients()
        logs[TRAIN_LR] = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.schedule.step()
        for ema in self.emas:
            ema.update(self.generator)
        self.step += 1
        logs[keys.TRAIN_LOSS] = float(total.detach())
        return logs

    def critic_update(
        self, term, optimizer: torch.optim.Optimizer, fake: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(max(1, term.objective.critic_steps)):
            out = term.objective.critic_loss(fake, self.sample_real(term, labels))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            term.objective.after_critic_step()
            logs = {keys.train_key(term.name, f"critic/{key}"): value for key, value in out.logs.items()}
        return logs

    def _clip_gradients(self) -> float:
        """The global L2 norm of the generator's gradients (before clipping); gradients scaled to at most
        ``train.grad_clip_norm`` when set (``torch.nn.utils.clip_grad_norm_``, in its two halves so a NaN is
        named before it would spread). One norm replaces a finiteness check per parameter."""
        params = [param for param in self.generator.parameters() if param.grad is not None]
        norm = torch.nn.utils.get_total_norm([param.grad for param in params])
        if not torch.isfinite(norm):
            self._check_gradients()
            raise NonFiniteError(
                f"the generator's gradient norm overflows to {float(norm)} at step {self.step + 1} (every gradient "
                f"is finite); lower train.lr or the loss weights"
            )
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.grad_clip_norm, norm)
        return float(norm)

    def _check_gradients(self) -> None:
        for name, param in self.generator.named_parameters():
            if param.grad is not None and not torch.isfinite(param.grad).all():
                raise NonFiniteError(f"gradient of generator parameter {name} is NaN/inf at step {self.step + 1}")

    def fit(self) -> None:
        steps, log_every = self.settings.optimization.steps, self.settings.schedule.log_every
        for callback in self.callbacks:
            callback.on_start(self)
        # a log file (no terminal) gets a progress line every 30 s instead of ten per second
        interval = 0.1 if sys.stderr.isatty() else 30.0
        bar = tqdm(
            total=steps,
            initial=self.step,
            desc="train",
            disable=not self.settings.runtime.progress,
            dynamic_ncols=True,
            mininterval=interval,
        )
        with bar:
            while self.step < steps:
                with signals.deferred():  # Ctrl-C/SIGTERM stop between steps, so the checkpoint is consistent
                    logs = self.train_step()
                bar.update(1)
                if self.step % log_every == 0 or self.step == steps:
                    bar.set_postfix(loss=f"{logs[keys.TRAIN_LOSS]:.4g}")
                for callback in self.callbacks:
                    callback.on_step(self, logs)
        for callback in self.callbacks:
            callback.on_end(self)

    # --- checkpoint state -------------------------------------------------------------------------
    @property
    def seen_spaces(self) -> list[str]:
        """Every space the generator's weights were optimised in: those of the ``train.init_from`` checkpoint,
        then this run's terms' (each once, in that order)."""
        return list(dict.fromkeys([*self.inherited_spaces, *(term.space.name for term in self.terms)]))

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "generator": self.generator.state_dict(),
            "generator_ema": self.ema.model.state_dict(),
            "generator_emas": {str(ema.decay): ema.model.state_dict() for ema in self.emas[1:]},
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.schedule.state_dict(),
            "objectives": [term.objective.state_dict() for term in self.terms],
            "critic_optimizers": [opt.state_dict() if opt is not None else {} for opt in self.critic_optimizers],
            init_from.SEEN_SPACES_KEY: self.seen_spaces,
            "inherited_spaces": list(self.inherited_spaces),
            "rng": {
                "torch": torch.get_rng_state(),
                "noise": self.noise_rng.get_state(),
                "real": self.real_rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.ema.model.load_state_dict(state["generator_ema"])
            self._load_other_emas(state.get("generator_emas", {}))  # checkpoints from before several EMAs: {}
            self.optimizer.load_state_dict(state["optimizer"])
            if "lr_schedule" in state:  # older checkpoints ran without a schedule (constant_lr: nothing to restore)
                self.schedule.load_state_dict(state["lr_schedule"])
            if len(state["objectives"]) != len(self.terms):
                raise ValueError(f"checkpoint has {len(state['objectives'])} terms, the config {len(self.terms)}")
            for term, objective_state, opt, opt_state in zip(
                self.terms, state["objectives"], self.critic_optimizers, state["critic_optimizers"]
            ):
                term.objective.load_state_dict(objective_state)
                if opt is not None:
                    opt.load_state_dict(opt_state)
        except (KeyError, RuntimeError, ValueError) as error:
            raise MatchzooError(f"checkpoint does not match this config: {str(error).splitlines()[0]}") from None
        self.inherited_spaces = list(state.get("inherited_spaces", []))  # older checkpoints: none recorded
        torch.set_rng_state(state["rng"]["torch"])
        self.noise_rng.set_state(state["rng"]["noise"])
        self.real_rng.set_state(state["rng"]["real"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])

    def _load_other_emas(self, stored: dict[str, Any]) -> None:
        expected = [str(ema.decay) for ema in self.emas[1:]]
        if sorted(stored) != sorted(expected):
            raise ValueError(
                f"checkpoint keeps EMA decays {sorted(stored) or 'none'} besides the primary one, the config "
                f"{sorted(expected) or 'none'}"
            )
        for ema in self.emas[1:]:
            ema.model.load_state_dict(stored[str(ema.decay)])
