"""A chapter opened alone, as Colab opens it: qwenlib installed from a built wheel (not the
repository), the notebook copied into an empty folder, nothing of the repository on the
path. Chapter 1 must run there top to bottom and leave nothing outside its own folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

RUN = r"""
import sys, nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import qwenlib; print('qwenlib from', qwenlib.__file__)"))
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the package's files: building in the repository
    would leave build/ and qwenlib.egg-info/ behind in it."""
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "qwenlib", source / "qwenlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                            str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = out.glob("qwenlib-*.whl")
    return path


def test_the_wheel_holds_the_package_and_the_licence(wheel):
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "qwenlib/model.py" in names and "qwenlib/__main__.py" in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names), names[-8:]
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: notebooks" in text and "matplotlib" in text and "ipywidgets" in text


def test_chapter_1_runs_alone_from_the_installed_wheel(wheel, tmp_path):
    site, folder, tmp = tmp_path / "site", tmp_path / "colab", tmp_path / "tmp"
    for d in (folder, tmp):
        d.mkdir()
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                                "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    notebook = folder / "01_tokens_and_data.ipynb"
    notebook.write_bytes((ROOT / "notebooks" / notebook.name).read_bytes())
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp),
           "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-c", RUN, str(notebook), str(folder)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads(notebook.read_text())["cells"]
    printed = ["".join(o.get("text", "")) for c in cells if c["cell_type"] == "code"
               for o in c["outputs"]]
    assert printed[0].startswith("device: ")
    assert f"qwenlib from {site}" in printed[-1], "the notebook must use the wheel, not the repository"
    assert not any(o.get("output_type") == "error" for c in cells if c["cell_type"] == "code"
                   for o in c["outputs"])
    left = sorted(p.name for p in tmp.iterdir())
    assert not left, f"the notebook left files outside its folder, in TMPDIR: {left}"
    assert (folder / "data_cache").is_dir()  # what it keeps, it keeps beside itself
