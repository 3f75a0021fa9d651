"""Sphinx configuration of the documentation site. `docs/build.py` stages the processed notebooks next to this file's
settings and runs Sphinx; run that, not sphinx-build, so that the pages are the notebooks as nbdev processes them."""
import json
import re
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
settings = ConfigParser(delimiters=["="])
settings.read(ROOT / "settings.ini", encoding="utf-8")
cfg = settings["DEFAULT"]

project = cfg["lib_name"]
author = cfg["author"]
copyright = cfg["copyright"]
release = version = cfg["version"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]  # viewcode: each entry links to its source
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# Pages show what the notebooks store (and what the build executed): Sphinx never runs a notebook itself.
nb_execution_mode = "off"
nb_output_stderr = "remove"  # warnings and progress bars are for the person running the notebook, not the reader
nb_render_markdown_format = "myst"  # nbdev's `show_doc` entries are Markdown outputs
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist", "attrs_inline"]
myst_heading_anchors = 3
# Markdown outputs (the `show_doc` entries) carry headings of their own; their level follows nbdev's pages.
suppress_warnings = ["myst.header"]

# Signatures and docstrings of every exported name, in source order; a docstring's `name` is code.
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# Every cross-reference into the package must resolve (a broken one fails the build, which runs Sphinx with -W);
# names of other libraries in signatures are not documented here and are left as text.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"^(?!seats_analysis\b).*")]

html_theme = "pydata_sphinx_theme"
html_title = cfg["lib_name"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_favicon = "favicon.svg"  # the token count falling over the three stages
html_static_path = ["_static"]
html_css_files = ["site.css"]  # a wider text column, tables and figures that scroll sideways instead of shrinking
html_sidebars = {"figures": []}  # the figures page uses the whole width of the window
html_context = {"default_mode": "light"}

# Cross-references in docstrings: a name of the package in backticks links to its entry, as in the notebooks.
_DOCLINKS = {}  # written beside the staged pages by docs/build.py
_BACKTICKS = re.compile(r"`([^`]+)`(\w?)")


def _docstring_line(line: str) -> str:
    """One line of an nbdev docstring (Markdown) in reStructuredText: a backticked name of the package a reference to
    its entry, any other backticked text code, a bar a bar (not a substitution)."""
    def span(m):
        text, after = m.group(1), m.group(2)
        name = text.removesuffix("()")
        code = f":py:obj:`{name} <{_DOCLINKS[name]}>`" if name in _DOCLINKS else f"``{text}``"
        return code + (f"\\ {after}" if after else "")
    parts = re.split(r"(`[^`]+`\w?)", line)
    return "".join(_BACKTICKS.sub(span, part) if part.startswith("`") else part.replace("|", "\\|")
                   for part in parts)


def _link_docstring(app, what, name, obj, options, lines):
    """Render each docstring line of the package as its notebook shows it, with its names linked; a constant shows no
    docstring of its type (a dict's or a tuple's)."""
    if what in ("data", "attribute") and getattr(type(obj), "__doc__", None) == getattr(obj, "__doc__", ""):
        lines.clear()
    lines[:] = [_docstring_line(line) for line in lines]


def setup(app):
    _DOCLINKS.update(json.loads((Path(app.srcdir) / "doclinks.json").read_text()))
    app.connect("autodoc-process-docstring", _link_docstring)
