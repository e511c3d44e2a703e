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
    """{package: lowest version} from pyproject.toml, the `notebooks` extra included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["notebooks"]
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


def test_every_lower_bound_is_installed_by_the_floors_file():
    bounds, pins = lower_bounds(), floors()
    assert set(bounds) - {"torch"} <= set(pins), "every declared package has a floor pin"
    for name, low in bounds.items():
        if name != "torch":  # the one build of torch this machine installs is requirements.txt's
            assert Version(pins[name]) == Version(low), \
                f"{name}: pyproject says >={low}, the floors file {pins[name]}"


@pytest.mark.skipif(os.environ.get("QWEN_COURSE_FLOORS") != "1",
                    reason="runs inside `make test-floors`, where the floors are on sys.path")
def test_the_floor_versions_are_the_ones_imported():
    for name, version in floors().items():
        assert importlib.metadata.version(name) == version, name
    import transformers
    assert transformers.__version__ == floors()["transformers"]


def test_the_notebooks_extra_draws_a_plot_and_builds_the_widget():
    """What the chapters need of matplotlib and ipywidgets, under whichever versions run."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import ipywidgets

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.semilogy(np.linspace(0, 1, 50), np.exp(np.linspace(0, 5, 50)), label="curve")
    ax.legend()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    assert png.getvalue().startswith(b"\x89PNG")
    slider = ipywidgets.FloatSlider(value=0.8, min=0, max=2, description="temperature")
    assert slider.value == 0.8
