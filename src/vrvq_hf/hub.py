"""Publishing on the Hugging Face Hub: a model folder as a model repo, the demo as a Gradio Space repo.

* :func:`prepare_model_folder` checks a saved model (``config.json`` with ``auto_map`` and the code files it
  names, ``model.safetensors``, ``preprocessor_config.json``, optional ``code_tables.safetensors``; no pickle
  weights) and copies what the Hub needs into a staging folder, with ``README.md`` built from the repository's
  ``MODEL_CARD.md`` plus YAML front matter (:func:`build_model_card`).
* :func:`prepare_space_folder` checks and stages the ``spaces/`` folder (``app.py``, ``README.md`` whose front
  matter says ``sdk: gradio``, ``requirements.txt``), pointing its ``models:`` entry at the model repo.
* :func:`push_model` / :func:`push_space` create the repo and upload the staged folder with a client that has
  the ``huggingface_hub.HfApi`` methods ``create_repo``, ``upload_folder`` and ``add_space_variable`` (pass
  ``api=`` to inject one, e.g. a recording fake in tests). ``dry_run=True`` prints every file with its size and
  the target repo, touches nothing and needs no token.

Every problem raises :class:`HubError` (a ``ValueError``) that says what is wrong and what to do.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from huggingface_hub import get_token

DEFAULT_MODEL_REPO = "vrvq-hf/vrvq-small-24khz"
DEFAULT_SPACE_REPO = "vrvq-hf/vrvq-demo"
MODEL_TAGS = ("audio", "audio-codec", "neural-audio-codec", "speech-tokenizer", "vrvq")
PIPELINE_TAG = "audio-to-audio"

REQUIRED_MODEL_FILES = ("config.json", "preprocessor_config.json")
OPTIONAL_MODEL_FILES = ("code_tables.safetensors", "generation_config.json")
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
REQUIRED_SPACE_FILES = ("app.py", "README.md", "requirements.txt")
# Never uploaded from the Space folder: caches, bytecode, generated audio and hidden files.
SPACE_IGNORE = ("__pycache__", "*.pyc", ".*", "*.wav", "*.flac", "*.vrvq", "flagged")


class HubError(ValueError):
    """A folder that cannot be published as it is, or a missing token; the message says what to do."""


@dataclass
class UploadPlan:
    """What one upload sends: the repo, its type and the staged files (path relative to ``folder``, bytes)."""

    repo_id: str
    repo_type: str  # "model" or "space"
    folder: Path
    files: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) left out of the upload
    space_sdk: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self) -> str:
        """A table of the files, their sizes and the target repo (what ``--dry-run`` prints)."""
        kind = f"{self.repo_type}" + (f", sdk {self.space_sdk}" if self.space_sdk else "")
        width = max([len(name) for name, _ in self.files] + [10])
        lines = [f"{self.repo_type} repo: {self.repo_id} (type {kind})"]
        lines += [f"  {name:<{width}}  {size:>12,d} bytes  {human_size(size):>9}" for name, size in self.files]
        lines.append(f"  {len(self.files)} files, {self.total_bytes:,d} bytes ({human_size(self.total_bytes)})")
        lines += [f"  not uploaded: {name} ({reason})" for name, reason in self.skipped]
        return "\n".join(lines)


def human_size(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def default_model_card() -> Path:
    """The repository's ``MODEL_CARD.md`` (next to ``src/``; exists in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "MODEL_CARD.md"


def default_space_folder() -> Path:
    """The repository's ``spaces/`` folder (exists in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "spaces"


# ------------------------------------------------------------------------------------------------- checks
def _require_folder(folder: str | os.PathLike, what: str) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise HubError(f"{what} not found: {path}")
    if not path.is_dir():
        raise HubError(f"{what} must be a folder, got a file: {path}")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise HubError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise HubError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _auto_map_modules(auto_map: dict[str, Any]) -> set[str]:
    """{'AutoModel': 'modeling_vrvq.VRVQModel'} -> {'modeling_vrvq'} (also 'repo--module.Class' forms)."""
    modules = set()
    for target in auto_map.values():
        for reference in target if isinstance(target, list) else [target]:
            if reference:
                modules.add(str(reference).split("--")[-1].rsplit(".", 1)[0])
    return modules


def _relative_imports(source: Path) -> set[str]:
    """Modules a code file imports relatively (``from .layers import X`` -> 'layers')."""
    try:
        tree = ast.parse(source.read_text(), filename=str(source))
    except SyntaxError as error:
        raise HubError(f"{source} is not valid Python: {error}") from None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def _code_files(folder: Path, auto_maps: Iterable[dict[str, Any]]) -> list[str]:
    """The .py files trust_remote_code needs: the auto_map modules and what they import, all present."""
    wanted: list[str] = sorted(set().union(*(_auto_map_modules(m) for m in auto_maps)))
    needed: list[str] = []
    while wanted:
        module = wanted.pop()
        if f"{module}.py" in needed:
            continue
        if not (folder / f"{module}.py").is_file():
            raise HubError(
                f"{folder} lacks {module}.py, which the auto_map code needs for trust_remote_code=True; "
                "save the model again with `import vrvq_hf` done first (it registers the classes so "
                "save_pretrained copies the code)"
            )
        needed.append(f"{module}.py")
        wanted.extend(sorted(_relative_imports(folder / f"{module}.py") - {m[:-3] for m in needed}))
    return sorted(needed)


def _weight_files(folder: Path) -> list[str]:
    """model.safetensors, or a sharded index and every shard it names."""
    if (folder / WEIGHTS_FILE).is_file():
        return [WEIGHTS_FILE]
    if (folder / WEIGHTS_INDEX).is_file():
        shards = sorted(set(_read_json(folder / WEIGHTS_INDEX).get("weight_map", {}).values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if not shards or missing:
            raise HubError(f"{folder / WEIGHTS_INDEX} names missing shards: {missing or 'none listed'}")
        return [WEIGHTS_INDEX, *shards]
    raise HubError(
        f"{folder} has no {WEIGHTS_FILE}: it holds no model weights; save the model with "
        "model.save_pretrained(folder) (or train / convert one first)"
    )


def check_model_folder(folder: str | os.PathLike) -> list[str]:
    """Verify a saved VRVQ model folder; return the files to upload (relative names, README.md excluded).

    Raises HubError for: a missing folder, pickle weights (.bin/.pt/...), no model.safetensors, no
    config.json or preprocessor_config.json, a config without ``auto_map`` or another model_type, and code
    files named by ``auto_map`` (or imported by them) that are missing.
    """
    path = _require_folder(folder, "model folder")
    pickles = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise HubError(
            f"{path} holds pickle weights ({', '.join(pickles)}): only safetensors are published (pickle "
            "files can run code when loaded); re-save with model.save_pretrained(folder), which writes "
            f"{WEIGHTS_FILE}, and delete the pickle files"
        )
    weights = _weight_files(path)
    for name in REQUIRED_MODEL_FILES:
        if not (path / name).is_file():
            hint = (
                "save the feature extractor too: VRVQFeatureExtractor.from_model_config(model.config)"
                ".save_pretrained(folder)" if name.startswith("preprocessor") else "not a saved model folder"
            )
            raise HubError(f"{path} has no {name}: {hint}")
    config = _read_json(path / "config.json")
    if config.get("model_type") != "vrvq":
        raise HubError(f"{path / 'config.json'} is for model_type {config.get('model_type')!r}, expected 'vrvq'")
    if not config.get("auto_map"):
        raise HubError(
            f"{path / 'config.json'} has no auto_map, so AutoModel.from_pretrained(..., trust_remote_code=True) "
            "cannot find the code; save the model after `import vrvq_hf` (it calls register_for_auto_class)"
        )
    preprocessor = _read_json(path / "preprocessor_config.json")
    code = _code_files(path, [config["auto_map"], preprocessor.get("auto_map") or {}])
    optional = [name for name in OPTIONAL_MODEL_FILES if (path / name).is_file()]
    return sorted({*REQUIRED_MODEL_FILES, *weights, *code, *optional})


# ------------------------------------------------------------------------------------------------- model card
def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """'---\\nyaml\\n---\\nbody' -> (yaml as dict, body); text without front matter -> ({}, text)."""
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", text, flags=re.DOTALL)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        raise HubError(f"the YAML front matter cannot be parsed: {error}") from None
    if not isinstance(data, dict):
        raise HubError("the YAML front matter must be a mapping of keys to values")
    return data, text[match.end():]


def _front_matter(data: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n"


def build_model_card(
    card_text: str,
    repo_id: str,
    *,
    license: str = "mit",
    datasets: Sequence[str] = (),
    base_model: str | None = None,
    tags: Sequence[str] = MODEL_TAGS,
) -> str:
    """The Hub README: YAML front matter (library_name, license, tags, pipeline_tag, and datasets /
    base_model when given; keys already in ``card_text``'s own front matter are kept) then the card body,
    with a usage section for ``repo_id`` appended when the card has none."""
    existing, body = _split_front_matter(card_text)
    meta: dict[str, Any] = {"library_name": "transformers", "license": license}
    meta["tags"] = list(dict.fromkeys([*tags, *existing.get("tags", [])]))
    meta["pipeline_tag"] = PIPELINE_TAG
    if datasets:
        meta["datasets"] = list(datasets)
    if base_model:
        meta["base_model"] = base_model
    meta.update({k: v for k, v in existing.items() if k != "tags"})
    body = body.strip() + "\n"
    if not re.search(r"^##+\s+(usage|how to use)", body, flags=re.IGNORECASE | re.MULTILINE):
        body += _usage_section(repo_id)
    return _front_matter(meta) + "\n" + body


def _usage_section(repo_id: str) -> str:
    return f"""
## Usage

```python
import torch
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True).eval()
fe = AutoFeatureExtractor.from_pretrained("{repo_id}", trust_remote_code=True)
audio = torch.zeros(fe.sampling_rate).numpy()  # one second of mono audio at the model's rate
inputs = fe(audio, sampling_rate=fe.sampling_rate, return_tensors="pt")
with torch.no_grad():
    codes = model.encode(inputs["input_values"], inputs["padding_mask"], level=1.0)  # or n_quantizers / target_kbps
    audio_out = model.decode(codes.audio_codes, num_codebooks=codes.num_codebooks,
                             padding_mask=codes.padding_mask).audio_values  # (batch, 1, samples)
print(codes.bitrate_kbps)  # counted kbps, side information included
```

With the `vrvq-hf` package installed, `vrvq_hf.VRVQModel.from_pretrained("{repo_id}")` works without
`trust_remote_code`.
"""


# ------------------------------------------------------------------------------------------------- staging
def _files_with_sizes(folder: Path, names: Iterable[str]) -> list[tuple[str, int]]:
    return [(name, (folder / name).stat().st_size) for name in sorted(names)]


def prepare_model_folder(
    folder: str | os.PathLike,
    staging: str | os.PathLike,
    repo_id: str = DEFAULT_MODEL_REPO,
    *,
    card: str | os.PathLike | None = None,
    license: str = "mit",
    datasets: Sequence[str] = (),
    base_model: str | None = None,
) -> UploadPlan:
    """Check ``folder`` (:func:`check_model_folder`), copy its publishable files into ``staging`` (created;
    must be empty) and write ``README.md`` from ``card`` (default: the repository's MODEL_CARD.md)."""
    source = _require_folder(folder, "model folder")
    names = check_model_folder(source)
    card_path = Path(card) if card is not None else default_model_card()
    if not card_path.is_file():
        raise HubError(f"model card not found: {card_path} (pass card=... / --card PATH)")
    target = _empty_staging(staging)
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    readme = build_model_card(
        card_path.read_text(), repo_id, license=license, datasets=datasets, base_model=base_model
    )
    (target / "README.md").write_text(readme)
    attached = card_files(card_path)
    for name in attached:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(card_path.parent / name, target / name)
    skipped = [
        (p.name, "not needed by from_pretrained" if p.name != "README.md" else "replaced by the model card")
        for p in sorted(source.iterdir())
        if p.name not in names and not p.name.startswith(".")
    ]
    return UploadPlan(repo_id, "model", target, _files_with_sizes(target, [*names, "README.md", *attached]), skipped)


_LOCAL_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def card_files(card_path: str | os.PathLike) -> list[str]:
    """Relative paths of the files the card shows or links to (``![...](docs/figures/x.png)``,
    ``[...](docs/training_log.md)``), so the upload carries them and the card's pictures and links work on
    the Hub. Raises HubError for a link to a file that is not there or lies outside the card's folder."""
    card_path = Path(card_path)
    found = []
    for link in _LOCAL_LINK.findall(card_path.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("/"):
            continue  # URLs (https:, mailto:) and absolute paths are not ours to upload
        path = (card_path.parent / link).resolve()
        if not path.is_file() or card_path.parent.resolve() not in path.parents:
            raise HubError(f"the model card links to {link!r}, which is not a file under {card_path.parent}")
        found.append(Path(link).as_posix())
    return list(dict.fromkeys(found))


def check_space_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Verify a Gradio Space folder; return its README front matter. Raises HubError when app.py,
    README.md or requirements.txt is missing, or the front matter lacks ``sdk: gradio`` or a valid app_file."""
    path = _require_folder(folder, "Space folder")
    for name in REQUIRED_SPACE_FILES:
        if not (path / name).is_file():
            raise HubError(f"{path} has no {name}: a Gradio Space needs {', '.join(REQUIRED_SPACE_FILES)}")
    meta, _ = _split_front_matter((path / "README.md").read_text())
    if meta.get("sdk") != "gradio":
        raise HubError(f"{path / 'README.md'} front matter must say `sdk: gradio`, got {meta.get('sdk')!r}")
    app_file = meta.get("app_file", "app.py")
    if not (path / app_file).is_file():
        raise HubError(f"{path / 'README.md'} names app_file {app_file!r}, which is not in {path}")
    return meta


def _space_files(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    keep, skipped = [], []
    for item in sorted(folder.rglob("*")):
        relative = item.relative_to(folder)
        if any(Path(part).match(pattern) for part in relative.parts for pattern in SPACE_IGNORE):
            if len(relative.parts) == 1:
                skipped.append((str(relative), "cache or generated file"))
            continue
        if item.is_file():
            keep.append(relative.as_posix())
    return keep, skipped


def prepare_space_folder(
    folder: str | os.PathLike,
    staging: str | os.PathLike,
    repo_id: str = DEFAULT_SPACE_REPO,
    *,
    model_repo: str | None = None,
) -> UploadPlan:
    """Check ``folder`` (:func:`check_space_folder`) and copy it into ``staging`` without caches or generated
    audio; with ``model_repo``, the README's ``models:`` entry names it (the Space page links the model)."""
    source = _require_folder(folder, "Space folder")
    meta = check_space_folder(source)
    names, skipped = _space_files(source)
    target = _empty_staging(staging)
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    if model_repo:
        _, body = _split_front_matter((source / "README.md").read_text())
        meta["models"] = [model_repo]
        (target / "README.md").write_text(_front_matter(meta) + body)
    return UploadPlan(repo_id, "space", target, _files_with_sizes(target, names), skipped, space_sdk="gradio")


def _empty_staging(staging: str | os.PathLike) -> Path:
    target = Path(staging)
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise HubError(f"staging folder {target} is not empty; give an empty or new folder")
    return target


# ------------------------------------------------------------------------------------------------- upload
def resolve_token(token: str | None) -> str:
    """The given token, else HF_TOKEN / the token saved by `hf auth login`; HubError when there is none."""
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login` "
            "(a --dry-run needs no token)"
        )
    return token


def _client(api: Any, token: str) -> Any:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _report(plan: UploadPlan, dry_run: bool, out: TextIO) -> None:
    print(("[dry run] " if dry_run else "") + plan.describe(), file=out)
    if dry_run:
        print(f"[dry run] nothing uploaded to {plan.repo_id}", file=out)


def push_model(
    folder: str | os.PathLike,
    repo_id: str = DEFAULT_MODEL_REPO,
    *,
    api: Any = None,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    card: str | os.PathLike | None = None,
    license: str = "mit",
    datasets: Sequence[str] = (),
    base_model: str | None = None,
    commit_message: str = "Upload VRVQ model",
    out: TextIO | None = None,
) -> UploadPlan:
    """Stage the model folder (:func:`prepare_model_folder`) and upload it as a model repo; returns the plan.

    The folder is checked before the token, so a dry run reports the same errors an upload would.
    """
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="vrvq-model-") as staging:
        plan = prepare_model_folder(
            folder, staging, repo_id, card=card, license=license, datasets=datasets, base_model=base_model
        )
        _report(plan, dry_run, out)
        if dry_run:
            return plan
        key = resolve_token(token)
        client = _client(api, key)
        client.create_repo(repo_id, repo_type="model", private=private, exist_ok=True, token=key)
        client.upload_folder(
            repo_id=repo_id, folder_path=str(plan.folder), repo_type="model",
            commit_message=commit_message, token=key,
        )
        print(f"uploaded {len(plan.files)} files to https://huggingface.co/{repo_id}", file=out)
        return plan


def push_space(
    folder: str | os.PathLike,
    repo_id: str = DEFAULT_SPACE_REPO,
    *,
    model_repo: str | None = None,
    api: Any = None,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str = "Upload VRVQ demo Space",
    out: TextIO | None = None,
) -> UploadPlan:
    """Stage the Space folder (:func:`prepare_space_folder`) and upload it as a Gradio Space repo. With
    ``model_repo`` the Space also gets the variable ``VRVQ_MODEL`` (the model the app loads)."""
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="vrvq-space-") as staging:
        plan = prepare_space_folder(folder, staging, repo_id, model_repo=model_repo)
        _report(plan, dry_run, out)
        if dry_run:
            if model_repo:
                print(f"[dry run] would set Space variable VRVQ_MODEL={model_repo}", file=out)
            return plan
        key = resolve_token(token)
        client = _client(api, key)
        client.create_repo(
            repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, token=key
        )
        client.upload_folder(
            repo_id=repo_id, folder_path=str(plan.folder), repo_type="space",
            commit_message=commit_message, token=key,
        )
        if model_repo:
            client.add_space_variable(repo_id, "VRVQ_MODEL", model_repo, token=key)
        print(f"uploaded {len(plan.files)} files to https://huggingface.co/spaces/{repo_id}", file=out)
        return plan


__all__ = [
    "DEFAULT_MODEL_REPO",
    "DEFAULT_SPACE_REPO",
    "HubError",
    "MODEL_TAGS",
    "UploadPlan",
    "build_model_card",
    "check_model_folder",
    "check_space_folder",
    "human_size",
    "card_files",
    "prepare_model_folder",
    "prepare_space_folder",
    "push_model",
    "push_space",
    "resolve_token",
]
