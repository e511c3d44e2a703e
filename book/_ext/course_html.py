"""Small fixes to the HTML the book's Sphinx stack writes (loaded from _config.yml).

- sphinx-thebe 0.3.1 and sphinx-togglebutton add their inline configuration scripts
  twice to every page (once with filename None, once with ""), and thebe's second copy
  throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser. Each
  page keeps the first copy of every script.
- Pages with saved ipywidgets: html-manager's modules find their icon fonts relative to
  where RequireJS thinks each module lives, by default the page's own folder (so every
  font was a 404). A RequireJS configuration placed before require.js points those
  modules at the CDN folder the bundle and its fonts come from.
- `widgets.js` is added to every page (see its header).
"""

from __future__ import annotations

import json
import re

from sphinx.builders.html._assets import _JavaScript

HTML_MANAGER = re.compile(r"^(?P<folder>https://.+/@jupyter-widgets/html-manager@[^/]+/dist)/embed-amd\.js$")


def _filename(script) -> str:
    return str(getattr(script, "filename", script) or "")  # inline scripts: None or ""


def _drop_repeated_scripts(scripts: list) -> list:
    seen, kept = set(), []
    for script in scripts:
        key = (_filename(script), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _configure_requirejs(scripts: list) -> list:
    names = [_filename(script) for script in scripts]
    manager = next((m for m in map(HTML_MANAGER.match, names) if m), None)
    loader = next((i for i, name in enumerate(names) if name.endswith("/require.js")
                   or name.endswith("/require.min.js")), None)
    if manager is None or loader is None:
        return scripts
    # The bundle defines these modules itself (named `define`s), so RequireJS never fetches
    # these addresses; each only sets the folder the module's fonts are looked up in.
    folder = manager["folder"]
    paths = {"@jupyter-widgets/html-manager/dist": folder}
    for module in ("base", "controls", "html-manager"):
        paths[f"@jupyter-widgets/{module}"] = f"{folder}/{module}"
    config = _JavaScript(None, body=f"var require = {{paths: {json.dumps(paths)}}};")
    return scripts[:loader] + [config] + scripts[loader:]


def _fix_scripts(app, pagename, templatename, context, doctree) -> None:
    if context.get("script_files"):
        context["script_files"] = _configure_requirejs(_drop_repeated_scripts(context["script_files"]))


def setup(app):
    app.add_js_file("widgets.js")
    app.connect("html-page-context", _fix_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
