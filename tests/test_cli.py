"""`python -m qwenlib` from a shell."""

import subprocess
import sys

from conftest import ROOT


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "qwenlib", *args], capture_output=True,
                          text=True, cwd=cwd, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                   "PYTHONPATH": str(ROOT)})


def test_data_command_prepares_the_cache_with_flags_from_the_config(tmp_path):
    result = run("data", "--max-tokens", "3000", "--max-seq-len", "64",
                 "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3,000 tokens" in result.stdout and "built-in corpus" in result.stdout
    assert any((tmp_path / "cache").iterdir())


def test_invalid_flag_values_name_the_field(tmp_path):
    result = run("data", "--d-model", "130", cwd=tmp_path)
    assert result.returncode == 2
    assert "PretrainingConfig.d_model=130: must be divisible by n_heads=4" in result.stderr


def test_train_says_plainly_that_the_trainer_is_not_built_yet(tmp_path):
    result = run("train", "--max-tokens", "3000", "--max-seq-len", "64",
                 "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing was trained" in result.stderr
