"""Fetch what the browser test needs that pip does not bring: the widget scripts.

The book's widget pages load two scripts from jsDelivr (`nb_ipywidgets_js` in
_config.yml), each a file of an npm package. CI has no internet but reaches the npm
registry, so this packs each package with `npm pack`, extracts the one file into
`<dest>/<package>@<version>/<path>` (the URL's own layout, with the package's
fonts beside it) and checks it against the
integrity hash the pages carry. The browser test then answers those URLs from here.

    python tools/browser_deps.py [dest]      # dest defaults to .venv/browser-assets
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NPM_URL = re.compile(r"^https://cdn\.jsdelivr\.net/npm/(?P<spec>(?:@[^/]+/)?[^@/]+@[^/]+)/(?P<path>.+)$")


def widget_scripts() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["sphinx"]["config"]["nb_ipywidgets_js"]


def integrity_of(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def fetch(dest: Path) -> None:
    npm = shutil.which("npm")
    for url, attributes in widget_scripts().items():
        match = NPM_URL.match(url)
        if not match:
            sys.exit(f"{url} is not a jsDelivr npm URL; tools/browser_deps.py only fetches those")
        target = dest / match["spec"] / match["path"]
        expected = attributes.get("integrity")
        if target.exists() and integrity_of(target.read_bytes()) == expected:
            continue
        if npm is None:
            sys.exit("npm not found: the browser test needs it once, to fetch the widget "
                     f"scripts ({match['spec']}) from the npm registry")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", "--silent", match["spec"]], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tarball) as tar:
                data = tar.extractfile(f"package/{match['path']}").read()
                fonts = [m for m in tar.getmembers() if m.isfile()
                         and m.name.endswith((".woff", ".woff2", ".ttf", ".eot"))]
                for member in fonts:   # the icon fonts the widgets ask for beside the script
                    font = dest / match["spec"] / member.name.removeprefix("package/")
                    font.parent.mkdir(parents=True, exist_ok=True)
                    font.write_bytes(tar.extractfile(member).read())
        if expected and integrity_of(data) != expected:
            sys.exit(f"{match['spec']}/{match['path']} from npm has hash {integrity_of(data)}, "
                     f"but _config.yml expects {expected}: fix the hash or the version")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        print(f"fetched {match['spec']}/{match['path']} ({len(data):,} bytes)")


if __name__ == "__main__":
    fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".venv" / "browser-assets")
