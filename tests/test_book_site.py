"""The rendered book, as a reader's browser sees it.

Headless Chromium (Debian's package, driven by Playwright) opens every page of the built
site (`_build/html`, written by `make book`) from a local HTTP server and checks what a
reader meets: the page's title, its figures, the Colab launch link of notebook pages,
internal links that lead somewhere, no JavaScript errors, and ipywidgets that render
from their saved state, or say why not where their scripts cannot load.

The machine this runs on has no internet: every request that leaves localhost is
answered by the test. The two widget scripts the pages take from CDNs are served from
copies `make browser-deps` fetched from the npm registry; everything else external
(MathJax, fonts) is refused, as it would be for an offline reader. Screenshots of every
page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import json
import mimetypes
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
ASSETS = Path(os.environ.get("QWEN_COURSE_BROWSER_ASSETS", ROOT / ".venv" / "browser-assets"))
CHROMIUM = os.environ.get("QWEN_COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
# The widget scripts: jsDelivr URLs of npm files, answered from tools/browser_deps.py's copies.
NPM_URL = re.compile(r"^https://cdn\.jsdelivr\.net/npm/(?P<file>(?:@[^/]+/)?[^@/]+@[^/]+/.+)$")

playwright = pytest.importorskip("playwright.sync_api", reason="run `make browser-deps`")


# ----------------------------------------------------------------------------- the pages

def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def _source(doc: str) -> Path:
    for suffix in (".md", ".ipynb"):
        if (ROOT / (doc + suffix)).exists():
            return ROOT / (doc + suffix)
    raise FileNotFoundError(f"_toc.yml lists {doc}, which is neither .md nor .ipynb")


def _markdown_title(text: str) -> str:
    """The first level-1 heading, as a reader sees it (no `*`, no backticks)."""
    for line in text.splitlines():
        if line.startswith("# "):
            return re.sub(r"[*`]", "", line[2:]).strip()
    raise ValueError("no '# ' title")


def _page(doc: str) -> dict:
    source = _source(doc)
    if source.suffix == ".md":
        text = source.read_text()
        return {"doc": doc, "notebook": False, "title": _markdown_title(text),
                "figures": text.count("```{figure}") + len(re.findall(r"!\[[^\]]*\]\(", text))}
    cells = json.loads(source.read_text())["cells"]
    title = _markdown_title("\n".join("".join(c["source"]) for c in cells
                                      if c["cell_type"] == "markdown"))
    figures = sum("image/png" in output.get("data", {})
                  for c in cells if c["cell_type"] == "code" for output in c.get("outputs", []))
    diagrams = sum("diagram" in c["metadata"].get("tags", []) and
                   any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
                   for c in cells if c["cell_type"] == "code")
    return {"doc": doc, "notebook": True, "title": title, "figures": figures, "diagrams": diagrams}


PAGES = [_page(doc) for doc in _toc_files()]
NOTEBOOK_PAGES = [p for p in PAGES if p["notebook"]]


def _printed_samples(doc: str) -> list[str]:
    """For each widget of a notebook, the first line the cell after it printed."""
    cells = json.loads(_source(doc).read_text())["cells"]
    samples = []
    for i, cell in enumerate(cells):
        outputs = cell.get("outputs", [])
        if any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs):
            after = cells[i + 1].get("outputs", []) if i + 1 < len(cells) else []
            text = "".join("".join(o.get("text", "")) for o in after if o["output_type"] == "stream")
            samples.append(next((line.strip() for line in text.splitlines() if line.strip()), ""))
    return samples


WIDGET_PAGES = [p["doc"] for p in NOTEBOOK_PAGES if _printed_samples(p["doc"])]


def _colab_url(doc: str) -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urllib.parse.urlparse(config["repository"]["url"]).path.strip("/")
    branch = config["repository"]["branch"]
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{doc}.ipynb"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def site() -> str:
    """The built site on a local server: its base URL."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built book in {SITE}: run `make book` first (`make test` does)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make browser-deps` installs Debian's "
                    "chromium package (or set QWEN_COURSE_CHROMIUM to a Chromium binary)")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Visit:
    """One page load, with everything the browser reported while loading it."""

    def __init__(self, browser, url: str, serve_widget_scripts: bool):
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.refused: list[str] = []          # external requests answered "offline"
        self.served_from_copy: list[str] = []
        self.local_failures: list[str] = []   # requests to the site that failed or 404ed
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", functools.partial(self._route, serve_widget_scripts))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error) + "\n" + (error.stack or "")[:600]))
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _route(self, serve_widget_scripts: bool, route) -> None:
        url = route.request.url
        if url.startswith("http://127.0.0.1:"):
            return route.continue_()
        match = NPM_URL.match(url)
        if serve_widget_scripts and match and (ASSETS / match["file"]).is_file():
            self.served_from_copy.append(url)
            kind = mimetypes.guess_type(match["file"])[0] or "application/octet-stream"
            return route.fulfill(path=str(ASSETS / match["file"]), content_type=kind,
                                 headers={"Access-Control-Allow-Origin": "*"})
        self.refused.append(url)
        return route.abort("internetdisconnected")

    def _console(self, message) -> None:
        if message.type != "error":
            return
        source = (message.location or {}).get("url", "")
        # A refused external request logs "Failed to load resource" at its own URL.
        if message.text.startswith("Failed to load resource") and source in self.refused:
            return
        self.console_errors.append(f"{message.text} ({source})")

    def _response(self, response) -> None:
        if response.url.startswith("http://127.0.0.1:") and response.status >= 400:
            self.local_failures.append(f"{response.status} {response.url}")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def visits(site, browser):
    """Every page of the table of contents, visited once (widget scripts served)."""
    if WIDGET_PAGES and not ASSETS.is_dir():
        pytest.fail(f"the widget scripts are not in {ASSETS}: run `make browser-deps` (npm)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    done = {}
    for page in PAGES:
        visit = Visit(browser, site + page["doc"] + ".html", serve_widget_scripts=True)
        name = page["doc"].replace("/", "__")
        visit.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        if page["doc"] in WIDGET_PAGES:   # give the widget manager time to render
            widget = visit.page.locator(".cell_output .jupyter-widgets").first
            widget.wait_for(timeout=20_000)
            widget.screenshot(path=str(SCREENSHOTS / f"{name}__widget.png"))
        done[page["doc"]] = visit
    yield done
    for visit in done.values():
        visit.close()


IDS = [p["doc"] for p in PAGES]


# ----------------------------------------------------------------------------- the checks

def test_the_site_lists_every_chapter_and_the_reference_pages():
    docs = set(IDS)
    notebooks = {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks <= docs, f"notebooks missing from _toc.yml: {sorted(notebooks - docs)}"
    for page in ("book/intro", "book/setup", "book/glossary", "book/performance", "book/qwenlib",
                 "book/answers"):
        assert page in docs, f"{page} is not in _toc.yml"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_shows_its_title(visits, page):
    visit = visits[page["doc"]]
    heading = visit.page.locator("article h1").first.inner_text()
    assert heading.rstrip("#¶ \n") == page["title"]
    assert visit.page.title().startswith(page["title"])


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_shows_one_search_box(visits, page):
    """sphinx-book-theme 1.3 on pydata-sphinx-theme 0.17 added a header bar with a second
    search box above the sidebar's; book/_static/custom.css hides it on wide screens."""
    boxes = visits[page["doc"]].page.locator(".search-button-field:visible")
    assert boxes.count() == 1


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_figures_are_rendered(visits, page):
    images = visits[page["doc"]].page.eval_on_selector_all(
        "article img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth])")
    broken = [src for src, width in images if not width]
    assert not broken, f"images that did not load: {broken}"
    assert len(images) >= page["figures"], (
        f"the source has {page['figures']} figures, the page shows {len(images)}")


@pytest.mark.parametrize("page", NOTEBOOK_PAGES, ids=[p["doc"] for p in NOTEBOOK_PAGES])
def test_chapter_page_shows_a_diagram_of_its_idea(visits, page):
    """Every chapter draws at least one idea (not a measurement) in a cell tagged `diagram`,
    whose code is hidden on the page and whose picture loads."""
    assert page["diagrams"] >= 1, f"{page['doc']} has no cell tagged 'diagram' with a picture"
    shown = visits[page["doc"]].page.eval_on_selector_all(
        ".tag_diagram img", "els => els.map(e => e.complete && e.naturalWidth > 200)")
    assert len(shown) == page["diagrams"] and all(shown), shown
    code = visits[page["doc"]].page.locator(".tag_diagram .cell_input:visible")
    assert code.count() == 0, "the drawing code should be hidden (tag hide-input)"


def test_answers_page_answers_every_exercise(visits):
    """Each exercise links to its answer; each checked one shows the tested solution's code."""
    page = visits["book/answers"].page
    anchors = set(page.eval_on_selector_all("article [id^='exercise-']", "els => els.map(e => e.id)"))
    linked = set()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(notebook.read_text())["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and text.startswith("**Exercise"):
                label = re.search(r"\{ref\}`answer <(exercise-[\w-]+)>`", text)
                assert label, f"{notebook.name}: an exercise without a link to its answer: {text[:60]}"
                linked.add(label[1])
    assert linked <= anchors, f"answers missing on the page: {sorted(linked - anchors)}"
    from qwenlib import exercises
    blocks = page.locator("article div.highlight-python").count()
    assert blocks >= len(exercises.__all__), f"{blocks} code blocks for {len(exercises.__all__)} checks"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES, ids=[p["doc"] for p in NOTEBOOK_PAGES])
def test_notebook_page_has_a_working_colab_link(visits, page):
    links = visits[page["doc"]].page.eval_on_selector_all(
        "a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
    assert links == [_colab_url(page["doc"])], links
    # The link opens the notebook at this path on the branch: it must be a tracked file.
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", page["doc"] + ".ipynb"],
                             cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0, f"{page['doc']}.ipynb is not tracked by git"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_has_no_javascript_errors(visits, page):
    visit = visits[page["doc"]]
    assert visit.page_errors == []
    assert visit.console_errors == []
    assert visit.local_failures == []


@functools.lru_cache(maxsize=None)
def _ids_at(url: str) -> frozenset[str] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            html = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError:
        return None
    return frozenset(re.findall(r'\bid="([^"]+)"', html))


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_internal_links_lead_somewhere(visits, site, page):
    hrefs = visits[page["doc"]].page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    broken = []
    for href in sorted(set(hrefs)):
        if not href.startswith(site):
            continue
        target, _, anchor = href.partition("#")
        ids = _ids_at(target)
        if ids is None:
            broken.append(f"{href}: page not found")
        elif anchor and urllib.parse.unquote(anchor) not in ids:
            broken.append(f"{href}: no element with id {anchor!r}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("doc", WIDGET_PAGES)
def test_widget_renders_from_its_saved_state(visits, doc):
    visit = visits[doc]
    scripts = [url for url in visit.served_from_copy if url.endswith(".js")]
    assert len(scripts) == 2, scripts   # require.js and html-manager, integrity-checked
    widget = visit.page.locator(".cell_output .jupyter-widgets").first
    assert widget.is_visible()
    # The saved state holds what the widget generated: the rendered output shows it.
    assert len(widget.inner_text().strip()) > 20
    assert visit.page.locator(".widget-fallback").count() == 0


@pytest.mark.parametrize("doc", WIDGET_PAGES)
def test_widget_degrades_to_the_printed_sample_without_its_scripts(site, browser, doc):
    visit = Visit(browser, site + doc + ".html", serve_widget_scripts=False)
    try:
        assert any("requirejs" in url for url in visit.refused)
        note = visit.page.locator(".widget-fallback")
        note.wait_for(timeout=10_000)
        assert "could not be loaded" in note.inner_text()
        # The next cell prints the sample the widget generated.
        for sample in _printed_samples(doc):
            assert sample, f"{doc}: the cell after a widget prints no sample"
            assert visit.page.locator(".cell_output pre").filter(has_text=sample).count() >= 1
        assert visit.page_errors == []
        visit.page.screenshot(path=str(SCREENSHOTS / (doc.replace("/", "__") + "__no-widget-scripts.png")))
    finally:
        visit.close()
