"""pyproject.toml's ranges are promises: every lower bound is what `make test-floors`
installs (requirements-floors.txt) and runs the library's tests under."""

import importlib.metadata
import os
import re
import tomllib

import pytest
from packaging.version import Version

from conftest import ROOT

FLOORS_FILE = ROOT / "requirements-floors.txt"


def lower_bounds() -> dict[str, str]:
    """{package: lowest version} from pyproject.toml, every extra included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    bounds = {}
    for spec in specs:
        name, low = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", spec.strip()).groups()
        bounds[name.lower()] = low
    return bounds


def floors() -> dict[str, str]:
    pins = {}
    for line in FLOORS_FILE.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


# What Colab's runtime has already imported when a chapter's setup cell runs (its
# August 2026 image, Python 3.13): `pip install qwenlib[notebooks,gguf]` must upgrade none of it.
COLAB = {"torch": "2.11.0", "transformers": "5.15.0", "numpy": "2.1.3", "tokenizers": "0.22.2",
         "datasets": "4.0.0", "safetensors": "0.8.0", "matplotlib": "3.10.0",
         "ipywidgets": "7.7.1"}


def test_every_lower_bound_is_installed_by_the_floors_file():
    bounds, pins = lower_bounds(), floors()
    assert set(bounds) <= set(pins), "every declared package has a floor pin, torch's too"
    for name, low in bounds.items():
        assert Version(pins[name]) == Version(low), \
            f"{name}: pyproject says >={low}, the floors file {pins[name]}"


def test_installing_qwenlib_in_colab_upgrades_nothing_colab_has():
    bounds = lower_bounds()
    for name, colab in COLAB.items():
        assert name in bounds, f"{name} is in Colab's runtime but not among qwenlib's needs"
        assert Version(bounds[name]) <= Version(colab), \
            f"{name}>={bounds[name]} would upgrade Colab's {colab} (and ask for a restart)"


@pytest.mark.skipif(os.environ.get("QWEN_COURSE_FLOORS") != "1",
                    reason="runs inside `make test-floors`, where the floors are on sys.path")
def test_the_floor_versions_are_the_ones_imported():
    for name, version in floors().items():
        assert importlib.metadata.version(name) == version, name
    import transformers
    assert transformers.__version__ == floors()["transformers"]


def diagrams():
    """(notebook, source) of every diagram cell of the book: a `_draw()` that makes a picture."""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "def _draw(" in source:
                yield path.name, source


DIAGRAMS = list(diagrams())


@pytest.mark.parametrize("notebook, source", DIAGRAMS, ids=[name for name, _ in DIAGRAMS])
def test_every_diagram_of_the_book_draws_with_the_installed_matplotlib(notebook, source):
    """The notebooks extra's matplotlib, at whichever version runs (under `make test-floors`,
    the lowest pyproject.toml admits), draws each diagram cell of the chapters to a PNG: the
    calls the book makes, not a plot of the test's own. (The widgets extra is tested by
    test_generation's widget tests, which run under the floors too.)"""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    try:
        exec(compile(source, notebook, "exec"), {"plt": plt})   # the cell draws as it does in Jupyter
        assert plt.get_fignums(), f"the diagram cell of {notebook} drew no figure"
        for number in plt.get_fignums():
            png = io.BytesIO()
            plt.figure(number).savefig(png, format="png")
            assert png.getvalue().startswith(b"\x89PNG")
    finally:
        plt.close("all")
