"""Convert a DAC model to VRVQ: a transformers DacModel folder / hub id, or a descript-audio-codec .pth file.

    python scripts/convert_dac.py --dac-checkpoint weights.pth --output converted/ [--n-codebooks 8]
    python scripts/convert_dac.py --transformers-dac descript/dac_44khz --output converted/

The importance subnet is newly initialised: constant-bitrate mode reproduces the DAC model; level and
target-kbps modes need training (scripts/train.py --init-from converted/).
"""

from __future__ import annotations

import argparse
import sys

from vrvq_hf import VRVQFeatureExtractor
from vrvq_hf.convert import from_original_dac_checkpoint, from_transformers_dac


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dac-checkpoint", help="descript-audio-codec .pth file")
    source.add_argument("--transformers-dac", help="folder or hub id of a transformers DacModel")
    parser.add_argument("--output", required=True, help="folder to write the VRVQ model to")
    parser.add_argument("--n-codebooks", type=int, default=None, help="keep the first N codebooks (paper: 8)")
    args = parser.parse_args(argv)
    if args.dac_checkpoint:
        model = from_original_dac_checkpoint(args.dac_checkpoint, n_codebooks=args.n_codebooks)
    else:
        from transformers import DacModel

        model = from_transformers_dac(DacModel.from_pretrained(args.transformers_dac), n_codebooks=args.n_codebooks)
    model.save_pretrained(args.output)
    VRVQFeatureExtractor.from_model_config(model.config).save_pretrained(args.output)
    c = model.config
    print(f"wrote {args.output}: {c.sampling_rate} Hz, hop {c.hop_length}, {c.n_codebooks} codebooks of {c.codebook_size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
