"""Training speed and peak memory on CPU: tiny and small configs, one process and two (gloo), in one run.

    python scripts/benchmark_training.py [--steps 30] [--data DIR]

Each case runs the real trainer in fresh processes on a generated audiofolder (or --data, an audiofolder
with a train split per category folder) and reports optimisation steps per second after a warm-up and
the peak resident memory of each process. With two processes on two cores each process gets one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CASES = {  # name -> (packaged config, overrides)
    "tiny": ("tiny_cpu", ["optim.batch_size=8", "data.excerpt_seconds=0.38"]),
    "small": ("local_small", ["optim.batch_size=8", "loss.rate_warmup_steps=0"]),
}


def make_corpus(root: str, sampling_rate: int = 24000) -> str:
    import numpy as np
    import soundfile

    rng = np.random.default_rng(0)
    t = np.arange(3 * sampling_rate) / sampling_rate
    for category in ("speech", "music"):
        folder = os.path.join(root, category, "train")
        os.makedirs(folder, exist_ok=True)
        for i in range(4):
            tone = np.sin(2 * np.pi * (150 + 50 * i) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
            soundfile.write(os.path.join(folder, f"{i}.wav"), (0.3 * tone + 0.01 * rng.standard_normal(t.size)).astype("float32"), sampling_rate)
    return root


def worker(args) -> None:
    """Runs inside each process: trains `steps` steps, prints one JSON line per process."""
    import torch

    from vrvq_hf.training.config import load_training_config
    from vrvq_hf.training.trainer import Trainer

    config_name, overrides = CASES[args.case]
    sources = "[" + ", ".join(f"{{name: {c}, path: {args.data}/{c}, split: train}}" for c in ("speech", "music")) + "]"
    overrides = overrides + [
        f"data.train={sources}", "data.validation=[]", f"run.output_dir={args.output}",
        "run.checkpoint_every=100000", "run.tensorboard=false",
        "run.progress_bar=false", "run.log_every=100000", "model.sampling_rate=24000",
    ]
    trainer = Trainer(load_training_config(config_name, overrides + [f"optim.max_steps={args.warmup + args.steps}"]))
    starts: list[float] = []
    step = trainer._train_step

    def timed_step(audio):  # the interval between step starts includes data loading and bookkeeping
        starts.append(time.perf_counter())
        return step(audio)

    trainer._train_step = timed_step
    trainer.train()
    measured = starts[args.warmup :]
    steps_per_s = (len(measured) - 1) / (measured[-1] - measured[0])
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    params = sum(p.numel() for p in trainer.accelerator.unwrap_model(trainer.model).parameters()) / 1e6
    print("RESULT " + json.dumps({
        "rank": trainer.accelerator.process_index, "steps_per_s": steps_per_s, "peak_mib": peak,
        "params_m": params, "threads": torch.get_num_threads(),
    }), flush=True)


def run_case(case: str, processes: int, args, data: str) -> list[dict]:
    output = tempfile.mkdtemp(prefix=f"bench-{case}-{processes}-")
    worker_args = [__file__, "--worker", "--case", case, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--data", data, "--output", output]
    if processes == 1:
        command = [sys.executable, *worker_args]
        env = {**os.environ}
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *worker_args]
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"})
    rows = [json.loads(line[len("RESULT "):]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not rows:
        raise RuntimeError(f"{case} x{processes} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data", default=None)
    parser.add_argument("--cases", default="tiny,small")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    data = args.data or make_corpus(tempfile.mkdtemp(prefix="bench-corpus-"))
    print(f"{'case':<8} {'procs':>5} {'params M':>9} {'steps/s':>8} {'samples/s':>10} {'peak MiB/proc':>14}")
    for case in args.cases.split(","):
        for processes in (1, 2):
            rows = run_case(case, processes, args, data)
            rate = min(r["steps_per_s"] for r in rows)
            peak = max(r["peak_mib"] for r in rows)
            print(f"{case:<8} {processes:>5} {rows[0]['params_m']:9.2f} {rate:8.2f} {rate * 8:10.1f} {peak:14.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
