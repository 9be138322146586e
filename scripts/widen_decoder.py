#!/usr/bin/env python
"""Write a copy of a trained model with a wider decoder that decodes exactly as the original does.

    python scripts/widen_decoder.py src/vrvq_hf/pretrained/vrvq-small-24khz --decoder-hidden-size 384 \\
        --output ~/vrvq_runs/widened_384 [--set silence_threshold_db=null] [--noise 0.01] [--seed 0]

The new channels copy old ones and the layers reading them share their weights out (with zero-sum noise
so that training can tell the copies apart), `vrvq_hf.training.widen.widen_decoder`; the result is the
`init_from` of a training stage that sets `model.decoder_hidden_size` to the new width. Prints the largest
difference between the two models' outputs on a second of noise, which should be float rounding.
"""

from __future__ import annotations

import argparse
import sys

import torch

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf.training.config import saved_config_with_overrides
from vrvq_hf.training.widen import widen_decoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved VRVQ model folder")
    parser.add_argument("--decoder-hidden-size", type=int, required=True, help="the new decoder width")
    parser.add_argument("--output", required=True, help="folder to write the widened model to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="VRVQConfig field to change (value in YAML), e.g. silence_threshold_db=null")
    parser.add_argument("--noise", type=float, default=1e-2, help="split noise relative to each weight's std")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = saved_config_with_overrides(args.model, args.overrides)
        model = VRVQModel.from_pretrained(args.model, config=config).eval()
        wider = widen_decoder(model, args.decoder_hidden_size, noise=args.noise, seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    probe = 0.1 * torch.randn(1, 1, model.config.sampling_rate, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (model(probe).audio_values - wider(probe).audio_values).abs().max().item()
    wider.save_pretrained(args.output)
    VRVQFeatureExtractor.from_model_config(wider.config).save_pretrained(args.output)
    count = sum(p.numel() for p in wider.parameters())
    print(f"decoder {model.config.decoder_hidden_size} -> {args.decoder_hidden_size} channels, "
          f"{count / 1e6:.2f} M parameters; largest output difference {difference:.2e}; saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
