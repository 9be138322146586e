#!/usr/bin/env python
"""Copy a trained export into the package as the shipped default model (vrvq_hf.DEFAULT_MODEL).

    python scripts/ship_model.py ~/vrvq_runs/local_small_stage2/export/step-00010000 \\
        [--set silence_threshold_db=-60] [--target src/vrvq_hf/pretrained/vrvq-small-24khz]

Loads the export with this checkout's code, applies the config overrides, and writes config, weights
(safetensors, weight norm folded), feature-extractor config and this checkout's modelling code (for
`trust_remote_code`) into the target, which is replaced. The export's training_state.json and a
code_tables.safetensors found in the export are carried over.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from vrvq_hf import DEFAULT_MODEL, VRVQFeatureExtractor, VRVQModel
from vrvq_hf.training.config import saved_config_with_overrides

CARRIED_FILES = ("training_state.json", "code_tables.safetensors")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="a model folder written by the trainer's export")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="VRVQConfig field to change (value in YAML), e.g. silence_threshold_db=-60")
    parser.add_argument("--target", default=DEFAULT_MODEL, help="destination folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = saved_config_with_overrides(args.export, args.overrides)
    except ValueError as error:  # no saved model, a malformed --set, an unknown field or a refused value
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = VRVQModel.from_pretrained(args.export, config=config).eval()
    if model.config.use_weight_norm:
        model = model.folded_copy()
    parent = os.path.dirname(os.path.abspath(args.target))
    os.makedirs(parent, exist_ok=True)  # a new target folder may name missing parents
    staging = tempfile.mkdtemp(prefix=".ship-", dir=parent)
    os.chmod(staging, 0o755)
    model.save_pretrained(staging)
    VRVQFeatureExtractor.from_model_config(model.config).save_pretrained(staging)
    for name in CARRIED_FILES:
        if os.path.isfile(os.path.join(args.export, name)):
            shutil.copy2(os.path.join(args.export, name), os.path.join(staging, name))
    shutil.rmtree(args.target, ignore_errors=True)
    os.replace(staging, args.target)
    size = sum(os.path.getsize(os.path.join(args.target, f)) for f in os.listdir(args.target))
    changed = ", ".join(args.overrides) or "none"
    print(f"shipped {args.export} -> {args.target} ({size / 2**20:.1f} MiB; config changes: {changed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
