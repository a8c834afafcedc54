"""The package as a user installs it, run from a folder outside the checkout: the checkout itself (``python
/path/to/run.py``), an editable install and a built wheel, each in a fresh virtual environment that reaches the
already installed dependencies (torch, transformers, ...) through a .pth line, so only platypus comes from the
install. All three compose the same config from conf/ (shipped as the package ``platypus.conf``)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import setuptools
import tomllib

from platypus.config import conf_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false"}


def fresh_env(root: Path) -> Path:
    """bin/ of a new venv that sees this interpreter's packages (but not the editable platypus) through a .pth."""
    venv.create(root / "env", with_pip=True)
    bin_dir = root / "env" / "bin"
    site = Path(subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # venv's own old setuptools would shadow the one the build needs (>=77, reached through the .pth line).
    subprocess.run([bin_dir / "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True, env={**ENV, "PYTHONPATH": ""})
    return bin_dir


def pip(bin_dir: Path, *args: str) -> None:
    subprocess.run([bin_dir / "pip", "install", "-q", "--no-deps", "--no-index", *args], check=True,
                   capture_output=True, text=True, timeout=300, env={**ENV, "PYTHONPATH": ""})


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding the wheel of this checkout."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (root / "dist").glob("platypus-*.whl")
    bin_dir = fresh_env(root)
    pip(bin_dir, str(wheel))
    return bin_dir


def test_pyproject_lists_every_package():
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(setuptools.find_packages(str(REPO), include=["platypus*"]) + ["platypus.conf"])


def test_checkout_editable_and_wheel_compose_the_same_config(installed, tmp_path_factory):
    """Each run from a folder outside the checkout; the editable install is made here, the wheel by the fixture."""
    outside = tmp_path_factory.mktemp("outside")
    editable = fresh_env(tmp_path_factory.mktemp("editable"))
    pip(editable, "--no-build-isolation", "-e", str(REPO))
    args = ("--cfg", "job", "lora=attention")
    outputs = {
        "checkout": subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=outside, capture_output=True,
                                   text=True, env={**ENV, "PYTHONPATH": ""}),
        "editable": platypus(editable, outside, *args),
        "wheel": platypus(installed, outside, *args),
    }
    for name, done in outputs.items():
        assert done.returncode == 0 and "target_modules:" in done.stdout, (name, done.stderr[-2000:])
    assert outputs["checkout"].stdout == outputs["editable"].stdout == outputs["wheel"].stdout
    where = subprocess.run([editable / "python", "-c", "import platypus.conf as c; print(c.__file__)"], cwd=outside,
                           capture_output=True, text=True, env={**ENV, "PYTHONPATH": ""}).stdout.strip()
    assert where == str(REPO / "conf" / "__init__.py")


def platypus(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([bin_dir / "platypus", *args], cwd=cwd, env={**ENV, "PYTHONPATH": ""}, capture_output=True,
                          text=True, timeout=600)


def test_the_package_comes_from_the_wheel(installed, tmp_path):
    where = subprocess.run([installed / "python", "-c", "import platypus; print(platypus.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.parent)) and "site-packages" in where


def test_python_dash_m_is_the_same_app(installed, tmp_path):
    args = ("--cfg", "job", "lora=attention")
    module = subprocess.run([installed / "python", "-m", "platypus", *args], cwd=tmp_path, capture_output=True,
                            text=True, env={**ENV, "PYTHONPATH": ""})
    assert module.returncode == 0 and module.stdout == platypus(installed, tmp_path, *args).stdout


def test_curate_runs_from_outside_the_checkout(installed, tmp_path):
    done = platypus(installed, tmp_path, "stages=[curate]", "data.sample=50", "logger=none", "stage_cache=null",
                    "curate.benchmarks=[truthfulqa_mc2]", "hydra.run.dir=run")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = (tmp_path / "run" / "curate" / "train.jsonl").read_text().splitlines()
    assert 0 < len(rows) <= 50 and (tmp_path / "run" / "run.log").is_file()
    assert "[platypus] curate: done" in done.stdout


def test_a_bad_override_gets_one_paragraph_and_exit_code_2(installed, tmp_path):
    done = platypus(installed, tmp_path, "lora.rr=8")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        "error: Unknown config key 'lora.rr' (in 'lora.rr=8'). Did you mean lora.r? Valid keys under lora: name, "
        "target_modules, r, alpha, dropout, bias. Nothing was run; add traceback=true for the full traceback."]
    assert not (tmp_path / "outputs").exists()


def test_help_is_the_apps_own_and_lists_every_group(installed, tmp_path):
    done = platypus(installed, tmp_path, "--help")
    assert done.returncode == 0 and done.stdout.startswith("platypus: the Platypus recipe")
    groups = [p.name for p in conf_dir().iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")]
    for group in groups:
        assert f"\n{group}: " in done.stdout, group
    assert "is powered by Hydra" not in done.stdout
