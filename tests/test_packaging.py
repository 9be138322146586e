"""The built wheel carries what `pip install` users need offline: the shipped model and the stage configs."""

import os
import shutil
import subprocess
import sys
import zipfile

import vrvq_hf

from .conftest import REPO_ROOT


def _build_wheel(tmp_path) -> str:
    """Build the wheel from a copy of the sources (a stale build/ of the checkout cannot leak into it)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, project / name)
    shutil.copytree(REPO_ROOT / "src", project / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(project)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("*.whl")
    return str(wheel)


def test_the_wheel_ships_the_default_model_and_loads_it_offline(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = os.path.relpath(vrvq_hf.DEFAULT_MODEL, os.path.dirname(os.path.dirname(vrvq_hf.__file__)))
    for name in os.listdir(vrvq_hf.DEFAULT_MODEL):
        assert f"{shipped}/{name}" in names, f"{name} of the shipped model is missing from the wheel"
    assert any(n.startswith("vrvq_hf/configs/") and n.endswith(".yaml") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any("__pycache__" in n for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    wheel], check=True, capture_output=True, timeout=300)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import torch, vrvq_hf\n"
        "assert vrvq_hf.__file__.startswith(sys.argv[1]), vrvq_hf.__file__\n"
        "from transformers import AutoModel\n"
        "model = AutoModel.from_pretrained(vrvq_hf.DEFAULT_MODEL).eval()\n"
        "with torch.no_grad():\n"
        "    out = model.encode(0.1 * torch.randn(1, 1, 4800), n_quantizers=2)\n"
        "print(type(model).__name__, tuple(out.audio_codes.shape))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script, str(site)], capture_output=True, text=True, env=env,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "VRVQModel"
