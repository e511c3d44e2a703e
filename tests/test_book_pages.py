"""The book's reference pages: the qwenlib page's examples run, and it covers the API."""

import re
from pathlib import Path

import qwenlib

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "book" / "qwenlib.md"


def _runnable_blocks(text: str) -> list[str]:
    """The page's ```python blocks (```{code-block} ones are shown, not run)."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_every_example_on_the_qwenlib_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = _runnable_blocks(API_PAGE.read_text())
    assert len(blocks) >= 20
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{API_PAGE.name}, example {number}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"example {number} failed:\n{block}") from error
    printed = capsys.readouterr().out
    assert "16 2" in printed                 # the first example's own comment says so
    assert "n_heads" in printed              # the ConfigError example printed the error


def test_the_qwenlib_page_shows_every_exported_name():
    headings = " ".join(re.findall(r"^### (.+)$", API_PAGE.read_text(), flags=re.M))
    missing = [name for name in qwenlib.__all__ if f"`{name}`" not in headings]
    assert not missing, f"book/qwenlib.md has no section for {missing}"
