"""Train VRVQ (or the CBR DAC baseline) with Accelerate.

    python scripts/train.py --config vrvq_a2 [--set optim.batch_size=16 --set run.output_dir=runs/x] [--resume]
    accelerate launch --multi_gpu --num_processes 4 scripts/train.py --config vrvq_a2
    # two real processes on CPU (gloo):
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no scripts/train.py --config tiny_cpu --set ...

--config takes a YAML file or a packaged name (vrvq_a2, cbr_dac, vrvq_a{0.5,1,4,8,16}, vrvq_square,
tiny_cpu, local_small, local_small_stage2 .. local_small_stage8, local_small_stage8_latent,
local_small_stage9_allocation, local_small_stage10_wide, local_small_stage11_speech, local_small_stage12_gan,
local_small_stage13_speech, local_small_stage14_phase, local_small_stage15_speech, local_small_stage16_speech,
local_small_stage17_speech, local_small_stage18_speech, local_small_stage19_gan, local_small_stage20_speech,
local_small_cbr).
Note: `accelerate launch --cpu --num_processes 2` silently runs ONE process.
"""

from __future__ import annotations

import argparse
import sys

from vrvq_hf.training.config import load_training_config
from vrvq_hf.training.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file or packaged config name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field, e.g. optim.batch_size=8 (repeatable; values are YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--export-only", action="store_true", help="with --resume: export the newest checkpoint and stop")
    args = parser.parse_args(argv)
    try:
        config = load_training_config(args.config, args.overrides)
        trainer = Trainer(config, resume=args.resume)
    except ValueError as error:  # a config or data problem, found before the first step
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.export_only:
        trainer.export(f"{config.run.output_dir}/export/step-{trainer.progress.step:08d}")
        return 0
    progress = trainer.train()
    if trainer.accelerator.is_main_process:
        print(f"done: step {progress.step}, {progress.wall_seconds / 3600:.2f} h; exported to "
              f"{config.run.output_dir}/export/final")
    return 0


if __name__ == "__main__":
    sys.exit(main())
