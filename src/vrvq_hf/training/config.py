"""Training configuration: YAML files (with `base:` inheritance) plus `key.sub=value` overrides.

Named configs live in `vrvq_hf/configs/` (package data): `vrvq_a2` (the paper's recipe), `cbr_dac` (the
constant-bitrate baseline), `vrvq_a{0.5,1,4,8,16}` (the alpha sweep), `vrvq_square` (the earlier
estimator), `tiny_cpu` (tests), `local_small`, `local_small_stage2` to `local_small_stage7`,
`local_small_stage10_wide`, `local_small_stage11_speech`, `local_small_stage13_speech`,
`local_small_stage15_speech` to `local_small_stage18_speech` (the stages of the model shipped with the
package; stage ten widens stage seven's decoder to 384 channels, `scripts/widen_decoder.py`, stage eleven
trains it on with more speech, stages thirteen and fifteen to eighteen repeat stage eleven's recipe),
`local_small_stage8` and `local_small_stage8_latent` (two runs on from stage seven, without and with the
optional latent term; not shipped), `local_small_stage9_allocation` (stage seven's importance subnet alone,
the codec frozen; not shipped), `local_small_stage12_gan` (stage eleven trained on with a discriminator; not
shipped), `local_small_stage14_phase` (stage eleven's recipe with the phase-aware `loss.complex_stft` term;
not shipped), `local_small_stage19_gan` (stage seventeen's decoder alone trained on with a discriminator
that first trains by itself; stopped at 4000 steps, not shipped), `local_small_stage20_speech` (stage
eleven's recipe a seventh time, on stage eighteen, with a new seed), `local_small_cbr` (the
constant-bitrate control, from stage three).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..configuration_vrvq import VRVQConfig

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
# Top-level modules of VRVQModel that `optim.lr_multipliers` and `init_reset` may name.
GENERATOR_PARTS = ("encoder", "importance_subnet", "quantizer", "decoder")


@dataclass
class SourceSpec:
    """One data source (see `vrvq_hf.data.DataSourceConfig`)."""

    name: str
    path: str | None = None
    category: str | None = None
    split: str | None = None
    audio_column: str | None = None
    config_name: str | None = None
    weight: float = 1.0
    streaming: bool = False


@dataclass
class DataSection:
    train: list[SourceSpec] = field(default_factory=list)
    validation: list[SourceSpec] = field(default_factory=list)
    excerpt_seconds: float = 0.38
    loudness_threshold_db: float = -40.0
    gain_db: tuple[float, float] = (-6.0, 6.0)
    polarity_prob: float = 0.5
    category_weights: dict[str, float] | None = None
    max_bad_files: int = 50
    num_workers: int = 0
    validation_clip_seconds: float = 5.0
    validation_clips_per_source: int = 8


@dataclass
class OptimSection:
    batch_size: int = 32  # global: split over processes and accumulation steps
    max_steps: int = 300_000
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    lr_decay: float = 0.999996  # exponential, per step, generator and discriminator
    grad_clip_generator: float = 1e3
    grad_clip_discriminator: float = 10.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    # Not in the paper (one rate for all there): learning-rate factors for parts of the generator, by
    # top-level module name (encoder, importance_subnet, quantizer, decoder), e.g. {importance_subnet: 0.3};
    # 0 freezes a part.
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    # Not in the paper: ramp the learning rate linearly from 1/lr_warmup_steps of its value over this many
    # steps (on top of the decay; 0 = off). Meant for restarts with a fresh optimiser (init_from).
    lr_warmup_steps: int = 0


@dataclass
class LossSection:
    """Weights of the trainer's terms; the model's commitment / codebook / rate weights are VRVQConfig fields."""

    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    # Not in the paper: ramp the rate term linearly from 0 over this many steps (0 = off, the paper's recipe).
    # From scratch on CPU the rate term drove the importance to ~0 within 100 steps, before extra codebooks
    # could lower the mel loss; the ramp lets the codebooks become useful first.
    rate_warmup_steps: int = 0
    # Not in the paper: weight of a loss on magnitude-compressed complex spectra (spectral.py's
    # MultiScaleComplexSTFTLoss; 0 = off). The mel loss does not see the phase; this term does.
    complex_stft: float = 0.0


@dataclass
class DiscriminatorSection:
    enabled: bool = True
    width: float = 1.0  # 1.0 = DAC size; 0.125 = small CPU variant
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    start_step: int = 0  # the discriminator trains from this step on
    # Not in the paper: after start_step, train the discriminator alone for this many steps before its
    # adversarial and feature-matching terms reach the generator (0 = at once, the paper's recipe). Meant for
    # adding a discriminator to a generator trained without one, which an untrained critic would only push
    # around.
    warmup_steps: int = 0


@dataclass
class RunSection:
    output_dir: str = "runs/vrvq"
    seed: int = 0
    log_every: int = 50
    validate_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    export_every: int = 0  # 0: only at the end
    validation_levels: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    tensorboard: bool = True
    progress_bar: bool = True


@dataclass
class TrainingConfig:
    model: dict[str, Any] = field(default_factory=dict)  # VRVQConfig fields
    init_from: str | None = None  # a VRVQ model folder (e.g. converted from DAC) to start from
    # with init_from: top-level modules to initialise afresh (e.g. [importance_subnet] to train a new subnet
    # on a trained codec)
    init_reset: list[str] = field(default_factory=list)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    discriminator: DiscriminatorSection = field(default_factory=DiscriminatorSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_config_path(name_or_path: str) -> str:
    """A file path, or the name of a packaged config (`vrvq_a2` -> vrvq_hf/configs/vrvq_a2.yaml)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    packaged = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    if os.path.isfile(packaged):
        return packaged
    names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
    raise ValueError(f"no config file {name_or_path!r}; packaged configs: {names}")


def _read_yaml(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = os.path.abspath(resolve_config_path(name_or_path))
    if path in seen:
        raise ValueError(f"config inheritance loop: {' -> '.join(seen + (path,))}")
    with open(path) as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if base.endswith(".yaml") and not os.path.isabs(base):  # a file next to this one; else a packaged name
        base = os.path.join(os.path.dirname(path), base)
    return _merge(_read_yaml(base, seen + (path,)), raw)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "model":
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, dict) and key == "model":
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `section.key=value` (value read as YAML) in the nested dict `raw`."""
    if "=" not in override:
        raise ValueError(f"override {override!r} must look like section.key=value (e.g. optim.batch_size=8)")
    dotted, text = override.split("=", 1)
    keys = dotted.strip().split(".")
    target = raw
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ValueError(f"override {override!r}: {key} is not a section")
    target[keys[-1]] = yaml.safe_load(text)


def saved_config_with_overrides(folder: str, overrides: list[str]) -> VRVQConfig:
    """The `VRVQConfig` saved in `folder`, with `field=value` overrides (values read as YAML) applied.

    Raises ValueError for a folder without config.json, a malformed override, a name that is not a
    VRVQConfig field, or a value the config refuses. (For the scripts' `--set FIELD=VALUE` options.)
    """
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(f"{folder} holds no config.json (not a saved model)")
    values: dict[str, Any] = {}
    for item in overrides:
        apply_override(values, item)
    config, unknown = VRVQConfig.from_pretrained(folder, return_unused_kwargs=True, **values)
    if unknown:
        raise ValueError(f"--set: not VRVQConfig fields: {sorted(unknown)}")
    return config


def _build(cls, values: dict[str, Any], where: str):
    """Instantiates dataclass `cls` from a mapping, naming unknown or mistyped fields."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(where + '.' + u for u in unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        spec = known[name]
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if name in ("train", "validation"):
            kwargs[name] = [_build(SourceSpec, v, f"{where}.{name}[{i}]") for i, v in enumerate(value or [])]
        elif dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple) and value is not None:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_training_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> TrainingConfig:
    """Reads a config (file or packaged name), applies `section.key=value` overrides, and checks it."""
    raw = _read_yaml(name_or_path)
    for override in overrides:
        apply_override(raw, override)
    config = _build(TrainingConfig, raw, "config")
    check_training_config(config)
    return config


def check_training_config(config: TrainingConfig) -> None:
    """Fails before the first step on values that cannot work, naming the field."""
    optim, run = config.optim, config.run
    for name in ("batch_size", "max_steps", "gradient_accumulation_steps"):
        if not isinstance(getattr(optim, name), int) or getattr(optim, name) < 1:
            raise ValueError(f"optim.{name} must be a positive int, got {getattr(optim, name)!r}")
    if optim.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"optim.mixed_precision must be no, fp16 or bf16, got {optim.mixed_precision!r}")
    if not isinstance(optim.lr_warmup_steps, int) or optim.lr_warmup_steps < 0:
        raise ValueError(f"optim.lr_warmup_steps must be an int >= 0, got {optim.lr_warmup_steps!r}")
    for name in ("start_step", "warmup_steps"):
        value = getattr(config.discriminator, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"discriminator.{name} must be an int >= 0, got {value!r}")
    if not 0 < optim.lr_decay <= 1:
        raise ValueError(f"optim.lr_decay must be in (0, 1], got {optim.lr_decay}")
    for name, factor in optim.lr_multipliers.items():
        if name not in GENERATOR_PARTS:
            raise ValueError(f"optim.lr_multipliers: unknown part {name!r}; expected one of {GENERATOR_PARTS}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 0:
            raise ValueError(f"optim.lr_multipliers.{name} must be a number >= 0 (0 freezes it), got {factor!r}")
    for name in config.init_reset:
        if name not in GENERATOR_PARTS:
            raise ValueError(f"init_reset: unknown part {name!r}; expected some of {GENERATOR_PARTS}")
    if config.init_reset and not config.init_from:
        raise ValueError("init_reset needs init_from (a model to start from)")
    for name in ("mel", "feature_matching", "adversarial", "complex_stft"):
        weight = getattr(config.loss, name)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"loss.{name} must be a number >= 0, got {weight!r}")
    for name in ("log_every", "validate_every", "checkpoint_every", "keep_checkpoints"):
        if not isinstance(getattr(run, name), int) or getattr(run, name) < 1:
            raise ValueError(f"run.{name} must be a positive int, got {getattr(run, name)!r}")
    if not config.data.train:
        raise ValueError("data.train lists no source")
    if config.data.excerpt_seconds <= 0:
        raise ValueError(f"data.excerpt_seconds must be > 0, got {config.data.excerpt_seconds}")
