"""Publishing to the Hub (vrvq_hf.hub, scripts/push_to_hub.py) with a recording fake client: no network."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vrvq_hf import VRVQFeatureExtractor, VRVQModel
from vrvq_hf import hub as hub_module
from vrvq_hf.hub import (
    HubError,
    build_model_card,
    card_files,
    check_model_folder,
    prepare_model_folder,
    push_model,
    push_space,
)

from .conftest import REPO_ROOT as ROOT
from .conftest import load_script, tiny_config

CARD = "# Tiny card\n\nA model card body.\n"


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records calls and what each uploaded folder held at that time."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, dict[str, bytes]] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", (repo_id,), kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", (), kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded[kwargs["repo_id"]] = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    def add_space_variable(self, repo_id, key, value, **kwargs):
        self.calls.append(("add_space_variable", (repo_id, key, value), kwargs))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = VRVQModel(tiny_config())
    model.save_pretrained(folder)
    VRVQFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    (folder / "training_state.json").write_text("{}")
    return folder


@pytest.fixture
def card(tmp_path) -> Path:
    path = tmp_path / "MODEL_CARD.md"
    path.write_text(CARD)
    return path


@pytest.fixture
def copy_of(tmp_path, model_folder):
    def make(name: str = "copy") -> Path:
        return Path(shutil.copytree(model_folder, tmp_path / name))

    return make


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub_module, "get_token", lambda: None)


def test_check_model_folder_lists_code_weights_and_configs(model_folder):
    files = check_model_folder(model_folder)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "configuration_vrvq.py",
                 "modeling_vrvq.py", "feature_extraction_vrvq.py"):
        assert name in files
    # modules imported relatively by the auto_map code travel along; files from_pretrained does not need do not
    assert {"layers.py", "quantizer.py", "importance.py"} <= set(files)
    assert "training_state.json" not in files


def test_dry_run_prints_every_file_with_its_size_and_touches_nothing(model_folder, card, no_token):
    out = io.StringIO()
    api = RecordingApi()
    plan = push_model(model_folder, "me/tiny", api=api, dry_run=True, card=card, out=out)
    text = out.getvalue()
    assert api.calls == []
    assert "me/tiny" in text and "dry run" in text
    for name, size in plan.files:
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert f"{size:,d} bytes" in line
    sizes = dict(plan.files)
    assert sizes["model.safetensors"] == (model_folder / "model.safetensors").stat().st_size
    assert "README.md" in sizes
    assert "training_state.json (not needed by from_pretrained)" in text


def test_script_dry_run_lists_model_and_space(model_folder, card, no_token, capsys):
    script = load_script("push_to_hub")
    code = script.main(["--dry-run", "--model-folder", str(model_folder), "--model-repo", "me/m",
                        "--space-repo", "me/s", "--card", str(card)])
    out = capsys.readouterr().out
    assert code == 0
    assert "model repo: me/m (type model)" in out and "space repo: me/s (type space, sdk gradio)" in out
    assert "app.py" in out and "requirements.txt" in out
    app_size = (ROOT / "spaces" / "app.py").stat().st_size
    assert f"{app_size:,d} bytes" in out


def test_script_reports_errors_without_a_trace(tmp_path, no_token, capsys):
    script = load_script("push_to_hub")
    assert script.main(["--model-folder", str(tmp_path / "nowhere"), "--no-space"]) == 2
    assert "error: model folder not found" in capsys.readouterr().err


def test_upload_model_with_fake_client(model_folder, card):
    api = RecordingApi()
    plan = push_model(model_folder, "me/tiny", api=api, token="hf_fake", card=card, private=True,
                      datasets=["me/corpus"], base_model="descript/dac_44khz", out=io.StringIO())
    assert api.names() == ["create_repo", "upload_folder"]
    _, args, kwargs = api.calls[0]
    assert args == ("me/tiny",) and kwargs["repo_type"] == "model" and kwargs["private"] is True
    assert kwargs["exist_ok"] is True and kwargs["token"] == "hf_fake"
    upload = api.calls[1][2]
    assert upload["repo_id"] == "me/tiny" and upload["repo_type"] == "model" and upload["token"] == "hf_fake"
    sent = api.uploaded["me/tiny"]
    assert sorted(sent) == sorted(name for name, _ in plan.files)
    assert sent["model.safetensors"] == (model_folder / "model.safetensors").read_bytes()
    assert "training_state.json" not in sent
    readme = sent["README.md"].decode()
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["license"] == "mit"
    assert meta["tags"] == ["audio", "audio-codec", "neural-audio-codec", "speech-tokenizer", "vrvq"]
    assert meta["datasets"] == ["me/corpus"] and meta["base_model"] == "descript/dac_44khz"
    assert meta["pipeline_tag"] == "audio-to-audio"
    assert "A model card body." in readme and 'AutoModel.from_pretrained("me/tiny", trust_remote_code=True)' in readme
    assert json.loads(sent["config.json"])["auto_map"]["AutoModel"] == "modeling_vrvq.VRVQModel"


def test_uploaded_folder_loads_with_trust_remote_code(model_folder, card, tmp_path):
    """What is uploaded is a complete model: load it through the Auto classes from the code it carries."""
    from transformers import AutoFeatureExtractor, AutoModel

    api = RecordingApi()
    push_model(model_folder, "me/tiny", api=api, token="hf_fake", card=card, out=io.StringIO())
    repo = tmp_path / "repo"
    for name, data in api.uploaded["me/tiny"].items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    model = AutoModel.from_pretrained(repo, trust_remote_code=True)
    fe = AutoFeatureExtractor.from_pretrained(repo, trust_remote_code=True)
    assert model.config.n_codebooks == 4 and fe.hop_length == model.config.hop_length
    reference = VRVQModel.from_pretrained(model_folder)
    assert torch.equal(model.state_dict()["quantizer.stages.0.codebook.weight"],
                       reference.state_dict()["quantizer.stages.0.codebook.weight"])


def test_upload_space_with_fake_client(no_token):
    api = RecordingApi()
    push_space(ROOT / "spaces", "me/demo", model_repo="me/tiny", api=api, token="hf_fake", out=io.StringIO())
    assert api.names() == ["create_repo", "upload_folder", "add_space_variable"]
    create = api.calls[0][2]
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert api.calls[1][2]["repo_type"] == "space"
    assert api.calls[2][1] == ("me/demo", "VRVQ_MODEL", "me/tiny")
    sent = api.uploaded["me/demo"]
    assert {"app.py", "README.md", "requirements.txt"} <= set(sent)
    assert not [name for name in sent if "__pycache__" in name or name.endswith((".pyc", ".wav", ".vrvq"))]
    meta = yaml.safe_load(sent["README.md"].decode().split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["models"] == ["me/tiny"]


def test_space_readme_pins_the_installed_gradio():
    import gradio

    meta = yaml.safe_load((ROOT / "spaces" / "README.md").read_text().split("---\n")[1])
    assert meta["sdk_version"] == gradio.__version__
    assert meta["license"] == "mit" and meta["pinned"] is False and meta["app_file"] == "app.py"
    assert {"title", "emoji", "colorFrom", "colorTo", "models"} <= set(meta)


def test_missing_token_is_refused_before_any_call(model_folder, card, no_token):
    api = RecordingApi()
    with pytest.raises(HubError, match="no Hugging Face token.*HF_TOKEN"):
        push_model(model_folder, "me/tiny", api=api, card=card, out=io.StringIO())
    with pytest.raises(HubError, match="no Hugging Face token"):
        push_space(ROOT / "spaces", "me/demo", api=api, out=io.StringIO())
    assert api.calls == []


def test_missing_folder(tmp_path, card):
    with pytest.raises(HubError, match="model folder not found"):
        push_model(tmp_path / "absent", "me/x", api=RecordingApi(), token="t", card=card, out=io.StringIO())
    with pytest.raises(HubError, match="Space folder not found"):
        push_space(tmp_path / "absent", "me/x", api=RecordingApi(), token="t", out=io.StringIO())


def test_folder_without_weights(copy_of, card):
    folder = copy_of()
    (folder / "model.safetensors").unlink()
    with pytest.raises(HubError, match="no model.safetensors"):
        push_model(folder, "me/x", api=RecordingApi(), token="t", card=card, dry_run=True, out=io.StringIO())


def test_pickle_weights_are_refused(copy_of):
    folder = copy_of()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(HubError, match=r"pickle weights \(pytorch_model.bin\).*safetensors"):
        check_model_folder(folder)


def test_config_without_auto_map(copy_of):
    folder = copy_of()
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HubError, match="no auto_map"):
        check_model_folder(folder)


def test_missing_code_file_and_preprocessor(copy_of):
    folder = copy_of("a")
    (folder / "quantizer.py").unlink()
    with pytest.raises(HubError, match="lacks quantizer.py"):
        check_model_folder(folder)
    folder = copy_of("b")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(HubError, match="no preprocessor_config.json.*from_model_config"):
        check_model_folder(folder)


def test_prepare_model_folder_copies_tables_and_refuses_a_used_staging(copy_of, card, tmp_path):
    folder = copy_of()
    (folder / "code_tables.safetensors").write_bytes(b"tables")
    plan = prepare_model_folder(folder, tmp_path / "stage", "me/x", card=card)
    assert (tmp_path / "stage" / "code_tables.safetensors").read_bytes() == b"tables"
    assert dict(plan.files)["code_tables.safetensors"] == 6
    with pytest.raises(HubError, match="not empty"):
        prepare_model_folder(folder, tmp_path / "stage", "me/x", card=card)
    with pytest.raises(HubError, match="model card not found"):
        prepare_model_folder(folder, tmp_path / "stage2", "me/x", card=tmp_path / "nope.md")


def test_pictures_and_documents_the_card_links_travel_with_it(model_folder, tmp_path):
    card = tmp_path / "card" / "MODEL_CARD.md"
    (card.parent / "docs").mkdir(parents=True)
    (card.parent / "docs" / "use.png").write_bytes(b"\x89PNG fake")
    (card.parent / "docs" / "log.md").write_text("# Log\n")
    card.write_text(
        "# Card\n\n![codebooks](docs/use.png)\n![logo](https://example.org/x.png)\n![again](./docs/use.png)\n"
        "See [the log](docs/log.md#stage-2), [the paper](https://arxiv.org/abs/1), [mail](mailto:a@b.c), [top](#card).\n"
    )
    assert card_files(card) == ["docs/use.png", "docs/log.md"]
    plan = prepare_model_folder(model_folder, tmp_path / "staging", "me/x", card=card)
    assert (tmp_path / "staging" / "docs" / "use.png").read_bytes() == b"\x89PNG fake"
    assert (tmp_path / "staging" / "docs" / "log.md").read_text() == "# Log\n"
    assert ("docs/use.png", 9) in plan.files and ("docs/log.md", 6) in plan.files
    card.write_text("![missing](docs/nope.png)\n")
    with pytest.raises(HubError, match="docs/nope.png"):
        prepare_model_folder(model_folder, tmp_path / "staging2", "me/x", card=card)
    card.write_text("![outside](../../etc/passwd)\n")
    with pytest.raises(HubError, match="not a file under"):
        card_files(card)


def test_model_card_keeps_its_own_front_matter_and_usage():
    text = "---\nlicense: apache-2.0\ntags: [speech]\n---\n# Card\n\n## Usage\nsee below\n"
    readme = build_model_card(text, "me/x")
    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and "speech" in meta["tags"] and "vrvq" in meta["tags"]
    assert "datasets" not in meta and "base_model" not in meta
    assert readme.count("## Usage") == 1


def test_repository_model_card_builds(tmp_path):
    readme = build_model_card((ROOT / "MODEL_CARD.md").read_text(), "vrvq-hf/vrvq-small-24khz")
    assert readme.startswith("---\nlibrary_name: transformers\n")
    assert "chae2025vrvq" in readme
    # every picture and document the card links to exists, so the upload can carry it
    assert {"docs/training_log.md", "docs/figures/rd_mel.png"} <= set(card_files(ROOT / "MODEL_CARD.md"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
