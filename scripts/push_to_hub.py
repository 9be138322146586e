"""Publish the model folder as a Hub model repo and spaces/ as a Gradio Space repo (vrvq_hf.hub does the work).

    python scripts/push_to_hub.py --dry-run                        # list files, sizes and repos; no token
    python scripts/push_to_hub.py --model-repo me/vrvq-small --space-repo me/vrvq-demo
    python scripts/push_to_hub.py --model-folder runs/x/export/final --no-space --base-model descript/dac_44khz

The model folder (default: the model shipped in the package, vrvq_hf.DEFAULT_MODEL) must hold config.json with
auto_map and its code files, model.safetensors and preprocessor_config.json (code_tables.safetensors is sent
when present); README.md is built from MODEL_CARD.md. The token comes from --token, HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse
import os
import sys

from vrvq_hf import DEFAULT_MODEL
from vrvq_hf.hub import (
    DEFAULT_MODEL_REPO,
    DEFAULT_SPACE_REPO,
    HubError,
    default_model_card,
    default_space_folder,
    push_model,
    push_space,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-folder", default=DEFAULT_MODEL, help="saved model folder (default: shipped model)")
    parser.add_argument("--model-repo", default=DEFAULT_MODEL_REPO, help="model repo id (owner/name)")
    parser.add_argument("--space-folder", default=str(default_space_folder()), help="Gradio Space folder")
    parser.add_argument("--space-repo", default=DEFAULT_SPACE_REPO, help="Space repo id (owner/name)")
    parser.add_argument("--no-model", action="store_true", help="do not upload the model")
    parser.add_argument("--no-space", action="store_true", help="do not upload the Space")
    parser.add_argument("--card", default=str(default_model_card()), help="model card body (MODEL_CARD.md)")
    parser.add_argument("--license", default="mit", help="license id for the model card front matter")
    parser.add_argument("--dataset", action="append", default=[], help="hub dataset id trained on (repeatable)")
    parser.add_argument("--base-model", default=None, help="hub id of the model this one was converted from")
    parser.add_argument("--private", action="store_true", help="create the repos as private")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or saved login)")
    parser.add_argument("--dry-run", action="store_true", help="print files, sizes and repo ids; upload nothing")
    args = parser.parse_args(argv)
    if args.no_model and args.no_space:
        parser.error("--no-model and --no-space together leave nothing to do")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_model and args.model_folder == DEFAULT_MODEL and not os.path.isdir(DEFAULT_MODEL):
        print(f"error: this installation ships no trained model yet ({DEFAULT_MODEL}); pass --model-folder "
              "PATH (a folder written by save_pretrained) or --no-model", file=sys.stderr)
        return 2
    try:
        if not args.no_model:
            push_model(
                args.model_folder, args.model_repo, token=args.token, private=args.private, dry_run=args.dry_run,
                card=args.card, license=args.license, datasets=args.dataset, base_model=args.base_model,
            )
        if not args.no_space:
            push_space(
                args.space_folder, args.space_repo, model_repo=None if args.no_model else args.model_repo,
                token=args.token, private=args.private, dry_run=args.dry_run,
            )
    except HubError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
