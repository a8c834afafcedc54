"""The package as a user installs it: a wheel built from this checkout, installed into a fresh virtual environment
(no editable install), and the ``platypus`` command run from a folder outside the checkout. The environment reaches
the already installed dependencies (torch, transformers, ...) through a .pth line: only platypus itself comes from
the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from platypus.config import CONF_DIR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
       "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding the wheel of this checkout."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(REPO)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (root / "dist").glob("platypus-*.whl")
    venv.create(root / "env", with_pip=True)
    bin_dir = root / "env" / "bin"
    site = Path(subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([bin_dir / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    return bin_dir


def platypus(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([bin_dir / "platypus", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def test_the_package_comes_from_the_wheel(installed, tmp_path):
    where = subprocess.run([installed / "python", "-c", "import platypus; print(platypus.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.parent)) and "site-packages" in where


def test_cfg_job_composes_the_same_config_as_the_checkout(installed, tmp_path):
    wheel = platypus(installed, tmp_path, "--cfg", "job", "lora=attention")
    checkout = subprocess.run([sys.executable, "run.py", "--cfg", "job", "lora=attention"], cwd=REPO, env=ENV,
                              capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    assert wheel.stdout == checkout.stdout and "target_modules:" in wheel.stdout
    module = subprocess.run([installed / "python", "-m", "platypus", "--cfg", "job", "lora=attention"], cwd=tmp_path,
                            env=ENV, capture_output=True, text=True)
    assert module.stdout == wheel.stdout


def test_curate_runs_from_outside_the_checkout(installed, tmp_path):
    done = platypus(installed, tmp_path, "stages=[curate]", "data.sample=50", "logger=none", "stage_cache=null",
                    "curate.decontaminate.benchmarks=[truthfulqa_mc2]", "hydra.run.dir=run")
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
    groups = [p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")]
    for group in groups:
        assert f"\n{group}: " in done.stdout, group
    assert "is powered by Hydra" not in done.stdout
