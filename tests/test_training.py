"""The trainer on a tiny config and a generated local audiofolder (offline, CPU)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile
import torch

from vrvq_hf import VRVQModel
from vrvq_hf.data import train_dataloader
from vrvq_hf.training.config import load_training_config
from vrvq_hf.training.trainer import Trainer, complete_checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16000


def _clip(kind: str, seconds: float, seed: int) -> np.ndarray:
    """Speech-like bursts (harmonic, on/off at ~3 Hz) or music-like chords, both with silent gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "speech":
        f0 = 120 + 60 * rng.random()
        voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        gate = (np.sin(2 * np.pi * (2.5 + rng.random()) * t) > 0.1).astype(float)
    else:
        voiced = sum(np.sin(2 * np.pi * f * t) for f in rng.choice([220, 277, 330, 440, 554], 3))
        gate = ((t % 1.0) < 0.6).astype(float)
    noise = 0.02 * rng.standard_normal(t.size)
    return (0.2 * voiced * gate + noise * gate).astype(np.float32)


@pytest.fixture(scope="module")
def audiofolder(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    seed = 0  # a counter, not hash(): string hashes change from process to process (PYTHONHASHSEED)
    for category in ("speech", "music"):
        for split, count in (("train", 6), ("validation", 2)):
            folder = root / category / split
            folder.mkdir(parents=True)
            for i in range(count):
                soundfile.write(folder / f"{category}_{split}_{i}.wav", _clip(category, 2.0, seed), RATE)
                seed += 1
    return root


def _overrides(audiofolder, output_dir, **extra):
    train = "[" + ", ".join(f"{{name: {c}, path: {audiofolder / c}, split: train}}" for c in ("speech", "music")) + "]"
    values = {
        "data.train": train,
        "data.excerpt_seconds": "0.25",
        "run.output_dir": str(output_dir),
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_loss_falls_and_importance_reacts_to_silence(audiofolder, tmp_path):
    config = load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{
        "optim.max_steps": "300", "run.checkpoint_every": "1000", "run.log_every": "25",
    }))
    trainer = Trainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    tone = 0.2 * np.sin(2 * np.pi * 200 * np.arange(4000) / RATE)
    probe = torch.from_numpy(np.concatenate([np.zeros(4000), tone]).astype(np.float32))[None, None]

    def mel_at_full_rate() -> float:
        model.eval()
        with torch.no_grad():
            value = trainer.mel_loss(model(probe).audio_values, probe).item()
        model.train()
        return value

    before = mel_at_full_rate()
    trainer.train()
    after = mel_at_full_rate()
    assert after < 0.8 * before, (before, after)
    model.eval()
    with torch.no_grad():
        encoded = model.encode(probe, level=1.0)
    counts = encoded.num_codebooks[0].float()
    frames = counts.numel()
    silent, loud = counts[: frames // 2 - 2].mean(), counts[frames // 2 + 2 :].mean()
    assert silent < loud, (silent, loud)
    exported = VRVQModel.from_pretrained(tmp_path / "export" / "final")
    assert exported.config.use_weight_norm is False
    state = json.loads((tmp_path / "export" / "final" / "training_state.json").read_text())
    assert state["step"] == 300
    assert trainer._rate_ramp() == 1.0  # the paper's recipe: no warm-up by default
    trainer.config.loss.rate_warmup_steps = 1200
    assert trainer._rate_ramp() == pytest.approx(0.25)


def test_the_complex_stft_term_is_trained_and_logged_only_when_weighted(audiofolder, tmp_path):
    def first_step(weight: str) -> tuple[Trainer, dict[str, float]]:
        config = load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / weight, **{
            "optim.max_steps": "1", "loss.complex_stft": weight, "discriminator.enabled": "false",
        }))
        trainer = Trainer(config)
        batch = next(iter(train_dataloader(trainer.stream, trainer.micro_batch)))["input_values"]
        return trainer, trainer._train_step(batch)

    off, logs_off = first_step("0")
    on, logs_on = first_step("2.5")
    assert off.complex_stft_loss is None and "complex_stft" not in logs_off
    assert on.complex_stft_loss is not None
    assert logs_on["complex_stft"] > 0
    # same seed, same batch: the total differs by exactly the weighted term
    assert logs_on["loss"] - logs_off["loss"] == pytest.approx(2.5 * logs_on["complex_stft"], rel=1e-4)
    with pytest.raises(ValueError, match="loss.complex_stft must be a number >= 0"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "bad", **{"loss.complex_stft": "-1"})))


def test_the_discriminator_can_train_alone_before_it_reaches_the_generator(audiofolder, tmp_path):
    config = load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{
        "optim.max_steps": "4", "discriminator.enabled": "true", "discriminator.start_step": "1",
        "discriminator.warmup_steps": "2",
    }))
    trainer = Trainer(config)
    batch = next(iter(train_dataloader(trainer.stream, trainer.micro_batch)))["input_values"]
    critic = trainer.accelerator.unwrap_model(trainer.discriminator)
    seen = []
    for step in range(4):
        trainer.progress.step = step
        before = torch.cat([p.detach().flatten() for p in critic.parameters()])
        logs = trainer._train_step(batch)
        moved = not torch.equal(before, torch.cat([p.detach().flatten() for p in critic.parameters()]))
        seen.append((moved, "d" in logs, "adv" in logs and "fm" in logs))
    # step 0: no critic yet; steps 1-2: the critic trains alone; step 3: its terms reach the generator
    assert seen == [(False, False, False), (True, True, False), (True, True, False), (True, True, True)]
    with pytest.raises(ValueError, match="discriminator.warmup_steps must be an int >= 0"):
        load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"discriminator.warmup_steps": "-1"}))


def test_learning_rate_warm_up_for_restarts_survives_a_resume(audiofolder, tmp_path):
    def config(steps: int):
        return load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{
            "optim.max_steps": str(steps), "optim.lr_warmup_steps": "4", "optim.lr_decay": "0.5",
            "run.checkpoint_every": "1",
        }))

    trainer = Trainer(config(3))
    lrs = []
    for _ in range(3):  # step s (1-based) runs at lr * s/4 * decay**(s-1)
        lrs.append(trainer.opt_g.param_groups[0]["lr"])
        trainer.config.optim.max_steps = len(lrs)
        trainer.train()
    assert lrs == [pytest.approx(1e-3 * f) for f in (0.25, 0.25, 0.1875)]
    resumed = Trainer(config(5), resume=True)
    assert resumed.progress.step == 3 and resumed.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.125)
    resumed.train()
    assert resumed.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**5)  # warm-up over, decay alone


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(audiofolder, tmp_path):
    def train(output: str, steps: int, resume: bool = False) -> torch.Tensor:
        config = load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / output, **{
            "optim.max_steps": str(steps), "run.checkpoint_every": "6", "discriminator.enabled": "true",
            "run.export_every": "6",  # an export right after the checkpoint must not move the training RNG
        }))
        trainer = Trainer(config, resume=resume)
        trainer.train()
        model = trainer.accelerator.unwrap_model(trainer.model)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    straight = train("straight", 12)
    train("interrupted", 6)
    resumed = train("interrupted", 12, resume=True)
    assert torch.equal(straight, resumed)  # data, levels, masks and optimisers all continue where they were


def test_config_errors_fail_before_the_first_step(audiofolder, tmp_path):
    with pytest.raises(ValueError, match="config.optim.batchsize"):
        load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"optim.batchsize": "4"}))
    with pytest.raises(ValueError, match="VRVQConfig.surrogate"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"model.surrogate": "relu"})))
    with pytest.raises(ValueError, match="optim.lr_warmup_steps must be an int >= 0"):
        load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"optim.lr_warmup_steps": "-5"}))
    with pytest.raises(ValueError, match="excerpt_seconds"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"data.excerpt_seconds": "0.0001"})))
    with pytest.raises(ValueError, match="not a known corpus"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"data.train": "[{name: librispeech}]"})))
    with pytest.raises(ValueError, match="divisible"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path, **{"optim.batch_size": "3", "optim.gradient_accumulation_steps": "2"})))
    with pytest.raises(ValueError, match="no config file"):
        load_training_config("no_such_config")


def test_packaged_variants_are_one_line_changes():
    base = load_training_config("vrvq_a2")
    assert base.model["surrogate_alpha"] == 2.0 and base.optim.batch_size == 32 and base.optim.max_steps == 300_000
    assert len(base.data.train) == 6
    assert (base.loss.mel, base.loss.feature_matching, base.loss.adversarial) == (15.0, 2.0, 1.0)
    assert (base.optim.learning_rate, base.optim.betas, base.optim.lr_decay) == (1e-4, (0.8, 0.99), 0.999996)
    assert (base.optim.grad_clip_generator, base.optim.grad_clip_discriminator) == (1000.0, 10.0)
    assert load_training_config("vrvq_a8").model["surrogate_alpha"] == 8
    assert load_training_config("vrvq_square").model["surrogate"] == "square"
    cbr = load_training_config("cbr_dac")
    assert cbr.model["use_importance_subnet"] is False and cbr.model["quantizer_dropout"] == 0.5


def test_the_shipped_models_stages_chain():
    stage1, stage2, stage3, stage4 = (load_training_config(f"local_small{s}") for s in ("", "_stage2", "_stage3", "_stage4"))
    assert stage1.model == stage2.model == stage3.model  # one architecture through all stages
    assert stage4.model == {**stage3.model, "silence_threshold_db": None}  # trained without the shipped gate
    assert stage2.init_from.endswith("local_small/export/step-00004000") and stage2.init_reset == ["importance_subnet"]
    assert stage3.init_from.endswith("local_small_stage2/export/step-00009250") and stage3.init_reset == []
    assert stage2.optim.lr_multipliers == stage3.optim.lr_multipliers == {"importance_subnet": 0.333}
    assert stage2.loss.rate_warmup_steps == stage3.loss.rate_warmup_steps == 0
    # stage 3 anneals: tenfold lower learning rate after 15000 steps
    assert stage3.optim.learning_rate * stage3.optim.lr_decay**15000 == pytest.approx(2.5e-5, rel=0.01)
    assert stage4.init_from.endswith("local_small_stage3/export/step-00016000") and stage4.init_reset == []
    assert stage4.optim.learning_rate * stage4.optim.lr_decay**6000 == pytest.approx(6e-6, rel=0.01)
    # the CBR control: stage four's start, data and schedule, with the DAC recipe in place of VRVQ's
    cbr = load_training_config("local_small_cbr")
    assert cbr.model == {**stage4.model, "use_importance_subnet": False, "quantizer_dropout": 0.5}
    assert (cbr.init_from, cbr.optim, cbr.data) == (stage4.init_from, stage4.optim, stage4.data)
    # stage five trains the allocation: the subnet at the paper's 1e-4, the codec at a tenth of it
    stage5 = load_training_config("local_small_stage5")
    assert stage5.model == stage4.model and stage5.init_from.endswith("local_small_stage4/export/step-00006000")
    assert stage5.optim.lr_multipliers == {"encoder": 0.1, "quantizer": 0.1, "decoder": 0.1, "importance_subnet": 1.0}
    assert stage5.optim.learning_rate * stage5.optim.lr_decay**8000 == pytest.approx(1e-5, rel=0.01)
    # stage six trains everything again, with the paper's category shares (3 speech : 2 music : 1 general)
    stage6 = load_training_config("local_small_stage6")
    assert stage6.model == stage5.model and stage6.init_from.endswith("local_small_stage5/export/step-00007000")
    assert set(stage6.optim.lr_multipliers.values()) == {1.0} and stage6.optim.lr_warmup_steps == 300
    assert stage6.optim.learning_rate * stage6.optim.lr_decay**12000 == pytest.approx(1e-5, rel=0.01)
    assert stage6.data.category_weights == {"speech": 3.0, "music": 2.0, "general": 1.0}
    assert stage5.data.category_weights is None and stage6.data.train == stage5.data.train
    # stage seven anneals stage six's model after 3000 steps, with the same shares
    stage7 = load_training_config("local_small_stage7")
    assert stage7.model == stage6.model and stage7.init_from.endswith("local_small_stage6/export/step-00003000")
    assert stage7.data == stage6.data and stage7.optim.lr_multipliers == stage6.optim.lr_multipliers
    assert stage7.optim.learning_rate * stage7.optim.lr_decay**6000 == pytest.approx(5e-6, rel=0.01)
    # stage eight trains stage seven's final model on with its recipe; the latent experiment adds the term
    stage8 = load_training_config("local_small_stage8")
    assert stage8.model == stage7.model and stage8.data == stage7.data
    assert stage8.init_from.endswith("local_small_stage7/export/step-00006000")
    assert stage8.optim.learning_rate * stage8.optim.lr_decay**8000 == pytest.approx(5e-6, rel=0.01)
    latent = load_training_config("local_small_stage8_latent")
    assert latent.model == {**stage8.model, "latent_loss_weight": 2.0}
    assert (latent.init_from, latent.optim, latent.data) == (stage8.init_from, stage8.optim, stage8.data)
    # stage nine trains the allocation alone: the codec frozen, the subnet at the paper's 1e-4
    allocation = load_training_config("local_small_stage9_allocation")
    assert allocation.model == stage7.model and allocation.data == stage7.data
    assert allocation.init_from == stage8.init_from
    assert allocation.optim.lr_multipliers == {"encoder": 0.0, "quantizer": 0.0, "decoder": 0.0, "importance_subnet": 1.0}
    assert allocation.optim.learning_rate * allocation.optim.lr_decay**6000 == pytest.approx(1e-5, rel=0.01)
    # stage ten: the shipped model with a wider decoder (scripts/widen_decoder.py), trained on as a whole
    wide = load_training_config("local_small_stage10_wide")
    assert wide.model == {**stage7.model, "decoder_hidden_size": 384} and wide.data == stage7.data
    assert wide.init_from.endswith("widened_384") and set(wide.optim.lr_multipliers.values()) == {1.0}
    assert wide.optim.learning_rate * wide.optim.lr_decay**6000 == pytest.approx(1e-5, rel=0.01)
    # stage eleven: stage ten's model trained on with more speech (4 : 1 : 1)
    speech = load_training_config("local_small_stage11_speech")
    assert speech.model == wide.model and speech.data.train == wide.data.train
    assert speech.data.category_weights == {"speech": 4.0, "music": 1.0, "general": 1.0}
    assert speech.init_from.endswith("local_small_stage10_wide/export/step-00006000")
    assert speech.optim.learning_rate * speech.optim.lr_decay**5000 == pytest.approx(5e-6, rel=0.01)
    # stage twelve: stage eleven's model and data with the paper's discriminator at an eighth of its width
    gan = load_training_config("local_small_stage12_gan")
    assert (gan.model, gan.data, gan.loss) == (speech.model, speech.data, speech.loss)
    assert gan.discriminator.enabled and gan.discriminator.width == 0.125 and not speech.discriminator.enabled
    assert gan.init_from.endswith("local_small_stage11_speech/export/step-00005000")
    assert gan.optim.learning_rate * gan.optim.lr_decay**3000 == pytest.approx(1e-5, rel=0.01)
    # stage thirteen: stage eleven's recipe once more, from stage eleven's export
    again = load_training_config("local_small_stage13_speech")
    assert (again.model, again.data, again.optim, again.discriminator) == (speech.model, speech.data, speech.optim, speech.discriminator)
    assert again.init_from == gan.init_from
    # stage fourteen: the same recipe with the phase-aware term
    phase = load_training_config("local_small_stage14_phase")
    assert (phase.model, phase.data, phase.optim, phase.discriminator) == (speech.model, speech.data, speech.optim, speech.discriminator)
    assert phase.init_from == gan.init_from and phase.loss.complex_stft == 4.0 and speech.loss.complex_stft == 0.0
    # stages fifteen to eighteen (the shipped weights): the same recipe a third to sixth time, each from the
    # export of the stage before
    repeats = []
    for name, previous in (
        ("local_small_stage15_speech", "local_small_stage13_speech"),
        ("local_small_stage16_speech", "local_small_stage15_speech"),
        ("local_small_stage17_speech", "local_small_stage16_speech"),
        ("local_small_stage18_speech", "local_small_stage17_speech"),
    ):
        repeat = load_training_config(name)
        assert (repeat.model, repeat.data, repeat.optim, repeat.discriminator, repeat.loss) == (speech.model, speech.data, speech.optim, speech.discriminator, speech.loss)
        assert repeat.init_from.endswith(f"{previous}/export/step-00005000")
        repeats.append(repeat)
    # stage nineteen: stage seventeen's decoder alone with the discriminator of stage twelve, which first
    # trains by itself for 1000 steps; the codes and the allocation cannot change
    critic = load_training_config("local_small_stage19_gan")
    assert (critic.model, critic.data, critic.loss) == (speech.model, speech.data, speech.loss)
    assert critic.discriminator == dataclasses.replace(gan.discriminator, warmup_steps=1000)
    assert critic.init_from.endswith("local_small_stage17_speech/export/step-00005000")
    assert critic.optim.lr_multipliers == {"encoder": 0.0, "importance_subnet": 0.0, "quantizer": 0.0, "decoder": 0.5}
    assert critic.optim.learning_rate * critic.optim.lr_decay**8000 == pytest.approx(1e-5, rel=0.01)
    # stage twenty: the recipe a seventh time, from stage eighteen, with a new seed (the rounds before all drew
    # the same excerpts, levels and masks with seed 0)
    fresh = load_training_config("local_small_stage20_speech")
    assert (fresh.model, fresh.data, fresh.optim, fresh.discriminator, fresh.loss) == (speech.model, speech.data, speech.optim, speech.discriminator, speech.loss)
    assert fresh.init_from.endswith("local_small_stage18_speech/export/step-00005000")
    assert speech.run.seed == 0 and all(r.run.seed == 0 for r in repeats) and fresh.run.seed == 20
    assert dataclasses.replace(fresh.run, seed=0, output_dir=speech.run.output_dir) == speech.run
    stages = (stage1, stage2, stage3, stage4, stage5, stage6, stage7, stage8, latent, allocation, wide, speech, gan, again, phase,
              *repeats, critic, fresh, cbr)
    assert len({c.run.output_dir for c in stages}) == len(stages)


def test_a_part_at_learning_rate_factor_zero_is_frozen(audiofolder, tmp_path):
    trainer = Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "a", **{
        "optim.max_steps": "2", "optim.lr_multipliers": "{encoder: 0, quantizer: 0, decoder: 0, importance_subnet: 1}",
    })))
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    in_groups = {id(p) for g in trainer.opt_g.param_groups for p in g["params"]}
    for name in ("encoder", "quantizer", "decoder"):
        assert all(not p.requires_grad and id(p) not in in_groups for p in getattr(model, name).parameters())
    trainer.train()
    after = model.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        assert changed == key.startswith("importance_subnet."), key  # only the subnet moved
    with pytest.raises(ValueError, match=r"lr_multipliers.decoder must be a number >= 0"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "b", **{"optim.lr_multipliers": "{decoder: -1}"})))


def _run_train(args, env_extra=None, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "train.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_sigkill_then_resume_from_the_newest_complete_checkpoint(audiofolder, tmp_path):
    sets = _overrides(audiofolder, tmp_path, **{"optim.max_steps": "400", "run.checkpoint_every": "5", "run.keep_checkpoints": "2"})
    args = ["--config", "tiny_cpu", *[a for s in sets for a in ("--set", s)]]
    process = _run_train(args)
    deadline = time.time() + 240
    while time.time() < deadline:
        found = complete_checkpoints(str(tmp_path))
        if found and int(found[-1].rsplit("-", 1)[1]) >= 15:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    found = complete_checkpoints(str(tmp_path))
    assert found, "no complete checkpoint was written"
    newest = int(found[-1].rsplit("-", 1)[1])
    # leftovers of an interrupted write must never be taken for a checkpoint
    (tmp_path / "checkpoints" / ".tmp-step-99999998").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / "step-99999999").mkdir()
    final_steps = newest + 7
    resumed = _run_train([*args, "--set", f"optim.max_steps={final_steps}", "--resume"])
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert f"resumed from {found[-1]} (step {newest})" in output
    state = json.loads((tmp_path / "export" / "final" / "training_state.json").read_text())
    assert state["step"] == final_steps
    assert state["samples_seen"] == final_steps * 4
    assert VRVQModel.from_pretrained(tmp_path / "export" / "final") is not None


def test_two_processes_train_together_and_agree(audiofolder, tmp_path):
    script = tmp_path / "two.py"
    sets = _overrides(audiofolder, tmp_path / "run", **{
        "optim.max_steps": "2", "run.checkpoint_every": "1000", "optim.lr_decay": "0.5",
    })
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {os.path.join(REPO, "src")!r})
        from vrvq_hf.training.config import load_training_config
        from vrvq_hf.training.trainer import Trainer
        trainer = Trainer(load_training_config("tiny_cpu", {sets!r}))
        acc = trainer.accelerator
        model = acc.unwrap_model(trainer.model)
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        trainer.train()
        end = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save({{"start": start, "end": end, "world": acc.num_processes, "shard": trainer.stream.process_index,
                    "lr": trainer.opt_g.param_groups[0]["lr"]}},
                   {str(tmp_path)!r} + f"/rank{{acc.process_index}}.pt")
    """))
    env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    result = subprocess.run(command, env={**os.environ, **env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["shard"] for r in ranks] == [0, 1]
    assert torch.equal(ranks[0]["start"], ranks[1]["start"])
    assert torch.equal(ranks[0]["end"], ranks[1]["end"])  # gradients were averaged: the replicas agree
    assert not torch.equal(ranks[0]["start"], ranks[0]["end"])  # and they did train
    # the schedule counts optimiser steps, not steps x processes: 2 steps of decay 0.5 from 1e-3
    assert [r["lr"] for r in ranks] == [pytest.approx(1e-3 * 0.5**2)] * 2


def test_warm_start_with_a_fresh_importance_subnet_and_its_own_learning_rate(audiofolder, tmp_path):
    first = Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "a", **{
        "optim.max_steps": "2", "optim.gradient_accumulation_steps": "2", "optim.lr_decay": "0.5",
    })))
    first.train()
    assert first.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)  # one decay per optimiser step
    source = tmp_path / "a" / "export" / "final"
    trained = VRVQModel.from_pretrained(source).state_dict()
    config = load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "b", **{
        "init_from": str(source), "init_reset": "[importance_subnet]",
        "optim.lr_multipliers": "{importance_subnet: 0.25}", "optim.learning_rate": "0.001",
    }))
    second = Trainer(config)
    model = second.accelerator.unwrap_model(second.model).folded_copy()
    fresh = model.state_dict()
    kept = [k for k in trained if not k.startswith("importance_subnet.")]
    reset = [k for k in trained if k.startswith("importance_subnet.") and k.endswith("conv.weight")]
    assert kept and reset
    # weight norm is applied for training and folded here again: equal up to float rounding
    assert all(torch.allclose(fresh[k], trained[k], rtol=1e-5, atol=1e-6) for k in kept)
    assert all(not torch.allclose(fresh[k], trained[k], rtol=1e-2, atol=1e-3) for k in reset)
    groups = second.opt_g.param_groups
    subnet = {id(p) for p in second.accelerator.unwrap_model(second.model).importance_subnet.parameters()}
    assert [g["lr"] for g in groups] == [pytest.approx(1e-3), pytest.approx(2.5e-4)]
    assert {id(p) for p in groups[1]["params"]} == subnet and not subnet & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(second.model.parameters()))
    with pytest.raises(ValueError, match="optim.lr_multipliers: unknown part 'vocoder'"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "c", **{"optim.lr_multipliers": "{vocoder: 2}"})))
    with pytest.raises(ValueError, match="init_reset needs init_from"):
        Trainer(load_training_config("tiny_cpu", _overrides(audiofolder, tmp_path / "c", **{"init_reset": "[importance_subnet]"})))
