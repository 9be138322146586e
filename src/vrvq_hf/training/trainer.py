"""The VRVQ trainer: generator (VRVQModel) and discriminator with Accelerate, from one CPU to many GPUs.

One optimisation step (SPEC section 5):
  1. the generator's training forward (random level per item, full-codebook share, straight-through mask);
  2. discriminator step on real vs reconstructed audio (least squares), gradient clipped at 10 (from
     `discriminator.start_step`; optionally alone for `discriminator.warmup_steps` before step 3 uses it);
  3. generator step: 15 * multi-scale mel L1 + 2 * feature matching + 1 * adversarial
     + the model's commitment, codebook and rate terms with the VRVQConfig weights (the rate term
     optionally ramped in over `loss.rate_warmup_steps`; the optional latent term, off in the paper's
     recipe, with `latent_loss_weight`); gradient clipped at 1000.
Both use AdamW (lr 1e-4, betas 0.8/0.99) with an exponential decay per optimiser step (one step however
many processes share the batch), optionally after a linear warm-up (`optim.lr_warmup_steps`).

Checkpoints (`accelerator.save_state`: models, optimisers, schedulers, RNG, step and data position) are
written to `checkpoints/.tmp-step-N` and renamed to `checkpoints/step-N` only once complete, so a crash
mid-write never leaves a checkpoint that looks complete; `resume=True` continues from the newest complete
one. `export()` writes the generator alone (weight norm folded) with `save_pretrained`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib.image
import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.scheduler import AcceleratedScheduler
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..configuration_vrvq import VRVQConfig
from ..data import (
    DataSourceConfig,
    build_train_stream,
    build_validation_set,
    train_dataloader,
    validation_dataloader,
)
from ..evaluation.plots import plot_codebook_usage
from ..feature_extraction_vrvq import VRVQFeatureExtractor
from ..modeling_vrvq import VRVQModel
from ..spectral import MultiScaleComplexSTFTLoss, MultiScaleMelLoss
from .config import OptimSection, SourceSpec, TrainingConfig, check_training_config
from .discriminators import Discriminator
from .losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE.json"


@dataclass
class TrainingProgress:
    """What a checkpoint needs beyond the weights: optimiser steps, items consumed per process, time."""

    step: int = 0
    samples_seen: int = 0
    wall_seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.samples_seen, self.wall_seconds = state["step"], state["samples_seen"], state["wall_seconds"]


def complete_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoint folders under `output_dir/checkpoints`, oldest first."""
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = [
        os.path.join(root, name)
        for name in os.listdir(root)
        if name.startswith("step-") and os.path.isfile(os.path.join(root, name, COMPLETE_MARKER))
    ]
    return sorted(found, key=lambda path: int(os.path.basename(path)[len("step-") :]))


def _source(spec: SourceSpec) -> DataSourceConfig:
    return DataSourceConfig(**asdict(spec))


def _split_outputs(outputs: list[list[torch.Tensor]], first: int) -> tuple[list, list]:
    """Discriminator outputs of a concatenated [a; b] batch -> (outputs of a, outputs of b)."""
    return [[t[:first] for t in maps] for maps in outputs], [[t[first:] for t in maps] for maps in outputs]


class Trainer:
    """Builds everything from a `TrainingConfig` (failing before the first step on a config that cannot
    work) and trains with `train()`."""

    def __init__(self, config: TrainingConfig, resume: bool = False, accelerator: Accelerator | None = None):
        check_training_config(config)
        self.config = config
        optim, run = config.optim, config.run
        run.output_dir = os.path.expanduser(run.output_dir)
        os.makedirs(run.output_dir, exist_ok=True)
        self.accelerator = accelerator or Accelerator(
            mixed_precision=optim.mixed_precision,
            gradient_accumulation_steps=optim.gradient_accumulation_steps,
            log_with="tensorboard" if run.tensorboard else None,
            project_dir=run.output_dir,
        )
        acc = self.accelerator
        shares = acc.num_processes * optim.gradient_accumulation_steps
        if optim.batch_size % shares:
            raise ValueError(
                f"optim.batch_size={optim.batch_size} must be divisible by processes x accumulation steps = {shares}"
            )
        self.micro_batch = optim.batch_size // shares
        set_seed(run.seed)

        model = self._build_model()
        self.model_config: VRVQConfig = model.config
        self.feature_extractor = VRVQFeatureExtractor.from_model_config(self.model_config)
        disc_cfg = config.discriminator
        discriminator = (
            Discriminator(periods=disc_cfg.periods, fft_sizes=disc_cfg.fft_sizes, width=disc_cfg.width)
            if disc_cfg.enabled
            else None
        )
        self.mel_loss = MultiScaleMelLoss(sampling_rate=self.model_config.sampling_rate).to(acc.device)
        self.complex_stft_loss = MultiScaleComplexSTFTLoss().to(acc.device) if config.loss.complex_stft else None

        # data first: a bad source fails here, before any step
        self.stream = build_train_stream(
            [_source(s) for s in config.data.train],
            sampling_rate=self.model_config.sampling_rate,
            hop_length=self.model_config.hop_length,
            excerpt_seconds=config.data.excerpt_seconds,
            category_weights=config.data.category_weights,
            loudness_threshold_db=config.data.loudness_threshold_db,
            gain_db=tuple(config.data.gain_db),
            polarity_prob=config.data.polarity_prob,
            seed=run.seed,
            process_index=acc.process_index,
            num_processes=acc.num_processes,
            max_bad_files=config.data.max_bad_files,
        )
        self.validation_clips = []
        if config.data.validation and acc.is_main_process:
            self.validation_clips = build_validation_set(
                [_source(s) for s in config.data.validation],
                sampling_rate=self.model_config.sampling_rate,
                clip_seconds=config.data.validation_clip_seconds,
                max_clips_per_source=config.data.validation_clips_per_source,
                split=None,
            )

        def adamw(params):
            return torch.optim.AdamW(params, lr=optim.learning_rate, betas=tuple(optim.betas))

        opt_g = adamw(generator_parameter_groups(model, optim.learning_rate, optim.lr_multipliers))
        sched_g = learning_rate_schedule(opt_g, optim)
        if discriminator is not None:
            opt_d = adamw(discriminator.parameters())
            sched_d = learning_rate_schedule(opt_d, optim)
            self.model, self.discriminator, self.opt_g, self.opt_d, self.sched_g, self.sched_d = acc.prepare(
                model, discriminator, opt_g, opt_d, sched_g, sched_d
            )
        else:
            self.model, self.opt_g, self.sched_g = acc.prepare(model, opt_g, sched_g)
            self.discriminator = self.opt_d = self.sched_d = None
        self.progress = TrainingProgress()
        acc.register_for_checkpointing(self.progress)
        if run.tensorboard:
            acc.init_trackers("vrvq", config=_flat_hparams(config))
        self.resumed_from: str | None = None
        if resume:
            self._resume()

    # ------------------------------------------------------------------------------------------ building
    def _build_model(self) -> VRVQModel:
        cfg = self.config
        if cfg.init_from:
            model = VRVQModel.from_pretrained(os.path.expanduser(cfg.init_from), **cfg.model)
            if not model.config.use_weight_norm:
                model.apply_weight_norm()
            for name in cfg.init_reset:
                part = getattr(model, name)
                if part is None:
                    raise ValueError(f"init_reset: the model in {cfg.init_from} has no {name}")
                part.apply(model._init_weights)
        else:
            model = VRVQModel(VRVQConfig(**cfg.model))
        return model.train()

    def _resume(self) -> None:
        found = complete_checkpoints(self.config.run.output_dir)
        if not found:
            start = f"the weights of {self.config.init_from}" if self.config.init_from else "a fresh initialisation"
            logger.warning("resume: no complete checkpoint in %s; starting at step 0 from %s", self.config.run.output_dir, start)
            return
        self.accelerator.load_state(found[-1])
        self.stream.skip_to(self.progress.samples_seen)
        self.resumed_from = found[-1]
        if self.accelerator.is_main_process:
            print(f"resumed from {found[-1]} (step {self.progress.step})", flush=True)

    # ------------------------------------------------------------------------------------------ training
    def train(self) -> TrainingProgress:
        acc, cfg = self.accelerator, self.config
        loader = iter(train_dataloader(self.stream, self.micro_batch, num_workers=cfg.data.num_workers))
        bar = tqdm(
            total=cfg.optim.max_steps, initial=self.progress.step, disable=not (acc.is_main_process and cfg.run.progress_bar),
            dynamic_ncols=True, unit="step",
        )
        last_time = window_start = time.time()
        window: dict[str, float] = {}
        window_steps = 0
        while self.progress.step < cfg.optim.max_steps:
            audio = next(loader)["input_values"].to(acc.device)
            self.progress.samples_seen += audio.shape[0]
            with acc.accumulate(*[m for m in (self.model, self.discriminator) if m is not None]):
                logs = self._train_step(audio)
            for key, value in logs.items():
                window[key] = window.get(key, 0.0) + value / acc.gradient_accumulation_steps
            if not acc.sync_gradients:
                continue
            now = time.time()
            self.progress.wall_seconds += now - last_time
            last_time = now
            self.progress.step += 1
            window_steps += 1
            step = self.progress.step
            bar.update(1)
            if step % cfg.run.log_every == 0 or step == cfg.optim.max_steps:
                means = {k: v / window_steps for k, v in window.items()}
                means["lr"] = self.sched_g.get_last_lr()[0]
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if k in ("mel", "rate", "kbps", "d")})
                acc.log({f"train/{k}": v for k, v in means.items()}, step=step)
                if acc.is_main_process and not cfg.run.progress_bar:  # a plain line for log files
                    rate = window_steps / max(now - window_start, 1e-9)
                    print(f"step {step} {rate:.2f} steps/s " + " ".join(f"{k}={v:.4g}" for k, v in means.items()), flush=True)
                window_start = now
                window, window_steps = {}, 0
            if step % cfg.run.validate_every == 0 and self.validation_clips is not None:
                self.validate()
            if step % cfg.run.checkpoint_every == 0:
                self.save_checkpoint()
            if cfg.run.export_every and step % cfg.run.export_every == 0:
                self.export(os.path.join(cfg.run.output_dir, "export", f"step-{step:08d}"))
        bar.close()
        if not complete_checkpoints(cfg.run.output_dir) or not complete_checkpoints(cfg.run.output_dir)[-1].endswith(
            f"step-{self.progress.step:08d}"
        ):
            self.save_checkpoint()
        self.export(os.path.join(cfg.run.output_dir, "export", "final"))
        acc.end_training()
        return self.progress

    def _train_step(self, audio: torch.Tensor) -> dict[str, float]:
        acc, cfg = self.accelerator, self.config
        out = self.model(audio)
        recon = out.audio_values
        logs: dict[str, float] = {}
        step, critic_cfg = self.progress.step, cfg.discriminator
        train_critic = self.discriminator is not None and step >= critic_cfg.start_step
        adversarial = train_critic and step >= critic_cfg.start_step + critic_cfg.warmup_steps
        if train_critic:
            real, fake = _split_outputs(self.discriminator(torch.cat([audio, recon.detach()])), audio.shape[0])
            loss_d = discriminator_loss(real, fake)
            acc.backward(loss_d)
            if acc.sync_gradients:
                acc.clip_grad_norm_(self.discriminator.parameters(), cfg.optim.grad_clip_discriminator)
            self.opt_d.step()
            self._step_schedule(self.sched_d, self.opt_d)
            self.opt_d.zero_grad(set_to_none=True)
            logs["d"] = loss_d.item()

        mel = self.mel_loss(recon, audio)
        model_cfg = self.model_config
        loss_g = (
            cfg.loss.mel * mel
            + model_cfg.commitment_loss_weight * out.commitment_loss
            + model_cfg.codebook_loss_weight * out.codebook_loss
            + model_cfg.rate_loss_weight * self._rate_ramp() * out.rate_loss
            + model_cfg.latent_loss_weight * out.latent_loss
        )
        if self.complex_stft_loss is not None:
            complex_stft = self.complex_stft_loss(recon, audio)
            loss_g = loss_g + cfg.loss.complex_stft * complex_stft
            logs["complex_stft"] = complex_stft.item()
        if adversarial:
            critic = acc.unwrap_model(self.discriminator)
            critic.requires_grad_(False)  # the generator step must not touch the discriminator
            with acc.autocast():
                real, fake = _split_outputs(critic(torch.cat([audio, recon])), audio.shape[0])
            real = [[t.detach() for t in maps] for maps in real]
            adv = generator_adversarial_loss(fake)
            fm = feature_matching_loss(real, fake)
            critic.requires_grad_(True)
            loss_g = loss_g + cfg.loss.adversarial * adv + cfg.loss.feature_matching * fm
            logs.update(adv=adv.item(), fm=fm.item())
        acc.backward(loss_g)
        if acc.sync_gradients:
            logs["grad_norm"] = float(acc.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip_generator))
        self.opt_g.step()
        self._step_schedule(self.sched_g, self.opt_g)
        self.opt_g.zero_grad(set_to_none=True)
        logs.update(
            loss=loss_g.item(),
            mel=mel.item(),
            commitment=out.commitment_loss.item(),
            codebook=out.codebook_loss.item(),
            rate=out.rate_loss.item(),
            latent=out.latent_loss.item(),
            kbps=out.bitrate_kbps.float().mean().item(),
            codebooks=out.num_codebooks.float().mean().item(),
        )
        return logs

    def _step_schedule(self, scheduler: AcceleratedScheduler, optimizer: AcceleratedOptimizer) -> None:
        """One step of a learning-rate schedule per optimiser step. Accelerate's own `scheduler.step()`
        steps once per process (it assumes each process loads a full batch; here processes share the global
        batch), which would decay N processes' learning rate N times faster than `optim.lr_decay` says."""
        if self.accelerator.sync_gradients and not optimizer.step_was_skipped:
            scheduler.scheduler.step()

    def _rate_ramp(self) -> float:
        """Factor of the rate term: 1, or a linear ramp over `loss.rate_warmup_steps`."""
        warmup = self.config.loss.rate_warmup_steps
        return 1.0 if warmup <= 0 else min(1.0, self.progress.step / warmup)

    # ---------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel distance and counted kbps on the validation clips at several levels and in CBR mode (main
        process; the others wait). Logs scalars, audio of the first clip and its codebook-use figure."""
        acc = self.accelerator
        results: dict[str, float] = {}
        if acc.is_main_process and self.validation_clips:
            model = acc.unwrap_model(self.model)
            model.eval()
            results = evaluate_rate_distortion(
                model, self.validation_clips, self.mel_loss, self.config.run.validation_levels, acc.device
            )
            acc.log({f"val/{k}": v for k, v in results.items()}, step=self.progress.step)
            self._log_examples(model)
            model.train()
        acc.wait_for_everyone()
        return results

    def _log_examples(self, model: VRVQModel) -> None:
        """Audio of the first validation clip at each level, and its codebook-use figure (also saved as PNG
        under `output_dir/validation/`). Its helpers are imported with this module, not here: a long run must
        not import code edited on disk while it trains."""
        if not self.config.run.tensorboard:
            return
        writer = self.accelerator.get_tracker("tensorboard", unwrap=True)
        clip = torch.from_numpy(self.validation_clips[0]["input_values"])[None, None].to(self.accelerator.device)
        rate, step, levels = self.model_config.sampling_rate, self.progress.step, self.config.run.validation_levels
        writer.add_audio("val/original", clip[0, 0].cpu(), step, sample_rate=rate)
        for level in levels if self.model_config.use_importance_subnet else ():
            encoded = model.encode(clip, level=level)
            decoded = model.decode(encoded.audio_codes, num_codebooks=encoded.num_codebooks)
            writer.add_audio(f"val/level_{level}", decoded.audio_values[0, 0].clamp(-1, 1).cpu(), step, sample_rate=rate)
        if self.model_config.use_importance_subnet:
            path = os.path.join(self.config.run.output_dir, "validation", f"codebooks_step-{step:08d}.png")
            plot_codebook_usage(model, clip[0, 0].cpu(), levels=levels, path=path, title=f"step {step}")
            writer.add_image("val/codebook_use", matplotlib.image.imread(path)[..., :3], step, dataformats="HWC")

    # --------------------------------------------------------------------------------- checkpoints, export
    def save_checkpoint(self) -> str:
        acc, run = self.accelerator, self.config.run
        root = os.path.join(run.output_dir, "checkpoints")
        name = f"step-{self.progress.step:08d}"
        tmp, final = os.path.join(root, f".tmp-{name}"), os.path.join(root, name)
        if acc.is_main_process:
            os.makedirs(root, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(tmp)
        acc.wait_for_everyone()
        if acc.is_main_process:
            with open(os.path.join(tmp, COMPLETE_MARKER), "w") as handle:
                json.dump(self.progress.state_dict(), handle)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in complete_checkpoints(run.output_dir)[: -run.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def export(self, folder: str) -> None:
        """The generator alone, weight norm folded, as a `from_pretrained` folder (main process)."""
        acc = self.accelerator
        if acc.is_main_process:
            model = acc.unwrap_model(self.model).folded_copy().to("cpu", torch.float32)
            model.save_pretrained(folder)
            self.feature_extractor.save_pretrained(folder)
            with open(os.path.join(folder, "training_state.json"), "w") as handle:
                json.dump({**self.progress.state_dict(), "training_config": self.config.to_dict()}, handle, indent=2)
        acc.wait_for_everyone()


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, optim: OptimSection
) -> torch.optim.lr_scheduler.LRScheduler:
    """Exponential decay by `optim.lr_decay` per step, times a linear warm-up from 1/lr_warmup_steps to 1
    over the first `optim.lr_warmup_steps` steps when that is > 0 (without one, the scheduler and its
    checkpoint state are a plain ExponentialLR, as before warm-up existed)."""
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=optim.lr_decay)
    if optim.lr_warmup_steps == 0:
        return decay
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / optim.lr_warmup_steps, total_iters=optim.lr_warmup_steps - 1
    )
    return torch.optim.lr_scheduler.ChainedScheduler([decay, warmup], optimizer)


def generator_parameter_groups(
    model: VRVQModel, learning_rate: float, multipliers: dict[str, float]
) -> list[dict[str, Any]]:
    """AdamW parameter groups: each top-level part named in `multipliers` at `learning_rate * factor`,
    the rest at `learning_rate`. A part at factor 0 is frozen (``requires_grad`` off, in no group);
    gradients still flow through it to the parts before it."""
    groups, claimed = [], set()
    for name, factor in multipliers.items():
        part = getattr(model, name)
        params = [] if part is None else list(part.parameters())
        claimed.update(id(p) for p in params)
        if factor == 0:
            for param in params:
                param.requires_grad_(False)
        elif params:
            groups.append({"params": params, "lr": learning_rate * factor})
    rest = [p for p in model.parameters() if id(p) not in claimed]
    return [{"params": rest}, *groups]


@torch.no_grad()
def evaluate_rate_distortion(
    model: VRVQModel,
    clips: list[dict[str, Any]],
    mel_loss: MultiScaleMelLoss,
    levels: tuple[float, ...],
    device: torch.device | str = "cpu",
    batch_size: int = 4,
) -> dict[str, float]:
    """Mean mel distance and counted kbps over `clips` at each level and at CBR 1, Nq/2 and Nq codebooks."""
    config = model.config
    modes = [("level", lv) for lv in levels] if config.use_importance_subnet else []
    modes += [("n_quantizers", n) for n in sorted({1, max(1, config.n_codebooks // 2), config.n_codebooks})]
    totals: dict[str, float] = {}
    count = 0
    for batch in validation_dataloader(clips, batch_size=batch_size):
        audio, mask = batch["input_values"].to(device), batch["padding_mask"].to(device)
        count += audio.shape[0]
        for name, value in modes:
            encoded = model.encode(audio, mask, **{name: value})
            decoded = model.decode(encoded.audio_codes, num_codebooks=encoded.num_codebooks, padding_mask=encoded.padding_mask)
            tag = f"level_{value}" if name == "level" else f"cbr_{value}"
            reference = audio[..., : decoded.audio_values.shape[-1]]
            mel = mel_loss(decoded.audio_values, reference, reduction="none")
            totals[f"mel_{tag}"] = totals.get(f"mel_{tag}", 0.0) + float(mel.sum())
            totals[f"kbps_{tag}"] = totals.get(f"kbps_{tag}", 0.0) + float(encoded.bitrate_kbps.sum())
    return {k: v / max(count, 1) for k, v in totals.items()}


def _flat_hparams(config: TrainingConfig) -> dict[str, Any]:
    """TensorBoard hparams take scalars and strings only."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (int, float, str, bool)) and not (isinstance(value, float) and math.isnan(value)):
            flat[prefix] = value
        else:
            flat[prefix] = str(value)

    walk("", config.to_dict())
    return flat
