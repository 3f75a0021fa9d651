"""Build the documentation site from the notebooks: `python docs/build.py` writes it into `_docs/` (nbdev's `doc_path`).

nbdev renders its sites with Quarto, which cannot be installed without downloading its binary. This build keeps
nbdev's own half of that pipeline and replaces only the renderer:

1. every notebook goes through nbdev's processors (`FilterDefaults`, what `nbdev_docs` runs before Quarto): front
   matter from the title cell, `#| hide` cells removed, a `show_doc` entry for every exported name, executed;
2. what Quarto would read from the processed notebook is said to Sphinx and MyST-NB in their terms: the `#|` cell
   options become MyST-NB's cell tags (`echo: false` hides the code, `include: false` the cell), the title cell a
   heading, a backticked name of the package a cross-reference to its entry in the API reference (nbdev's doclinks);
3. Sphinx renders the notebooks with their stored outputs (the few listed in `EXECUTED`, cheap and deterministic,
   are run first) in the numbered order, `index` as the home page, the figures of `figures/` and an API reference
   of every public name (autodoc: signature and docstring); any Sphinx warning fails the build;
4. a crawl over the built pages checks every link and anchor, and that no page shows a machine's path, a
   progress bar or a warning in an output."""
import argparse
import json
import os
import re
import shutil
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from unittest.mock import patch
from urllib.parse import unquote, urldefrag, urlparse

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NBS = ROOT / "nbs"
FIGURES = ROOT / "figures"
STAGE = ROOT / "_proc"  # nbdev's folder of processed notebooks: the staged pages and Sphinx's working files
OUT = ROOT / "_docs"
# Notebooks the build runs before rendering: they only read committed files (and show them), in seconds.
EXECUTED = ("index.ipynb", "42_organism_results.ipynb")
OPTION_TAGS = {("echo", "false"): "remove-input", ("output", "false"): "remove-output",
               ("include", "false"): "remove-cell"}
_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_BACKTICKS = re.compile(r"(?<![\[`\w])`(\w[\w.]*)(?:\(\))?`(?![`\]])")
_FENCE = re.compile(r"^(```|~~~)")
_SOURCE_LINK = re.compile(r"\[source\]\([^)]*\)(\{[^}]*\})?")


def notebooks() -> list[Path]:
    "The notebooks in page order: `index` first, then by their numbered names."
    found = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    return sorted(found, key=lambda p: p.stem != "index")


def doclinks() -> dict[str, str]:
    """Each name a reader may write in backticks, mapped to the full name of its API entry: the full dotted name of
    every public module and name of the package, a name without its module (`Schedule.plan`) where only one module
    exports it, and a module's name without the package (`plan`; `seats` is the function the module is named for)."""
    from seats_analysis._modidx import d

    full, short = {}, {}
    for module, syms in d["syms"].items():
        full[module] = module
        for name in syms:
            parts = name[len(module) + 1:].split(".")
            if any(part.startswith("_") for part in parts):
                continue
            full[name] = name
            full[name.removeprefix("seats_analysis.")] = name  # `harness.reached`, as the prose writes it
            for i in range(len(parts)):
                short.setdefault(".".join(parts[i:]), set()).add(name)
    unique = {name: targets.pop() for name, targets in short.items() if len(targets) == 1}
    # a module's own name (`plan`, `seats`) is the module, or the name it is named after where it exports one
    modules = {module.rsplit(".", 1)[1]: full.get(f"{module}.{module.rsplit('.', 1)[1]}", module) for module in d["syms"]}
    return {**unique, **modules, **full}


def linkify(markdown: str, links: dict[str, str], pages: set[str]) -> str:
    "Backticked names of the package become MyST cross-references, backticked notebook names links to their page."
    out, fenced = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        if not fenced:
            def link(m):
                name = m.group(1)
                if name in pages:
                    return f"[`{name}`]({name}.ipynb)"
                return f"{{py:obj}}`{name} <{links[name]}>`" if name in links else m.group(0)
            line = _BACKTICKS.sub(link, line)
        out.append(line)
    return "\n".join(out)


def cell_options(source: str) -> tuple[dict, str]:
    "The `#|` options of a code cell (Quarto's cell options) and its source without them."
    options, body = {}, []
    for line in source.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            options[match.group(1)] = match.group(2).lower()
        elif not line.startswith("#|"):
            body.append(line)
    return options, "\n".join(body).strip("\n")


def front_matter(source: str) -> dict:
    "The fields of nbdev's front matter cell (`---` YAML `---`) that a page shows: title and description."
    import yaml

    block = source.strip().strip("-").strip()
    return yaml.safe_load(block) or {}


def maintainers_only(cell) -> bool:
    "Whether a cell is one only maintainers run (`#| eval: false`, tagged `skip-execution`): the build skips it."
    return bool(re.search(r"^#\|\s*eval:\s*false", cell.source, re.M)) or "skip-execution" in cell.metadata.get("tags", [])


def execute(nb, folder: Path):
    """Run a notebook as nbdev's tests do, from its own folder and without its maintainers' cells, with its outputs
    stored in the cells."""
    from execnb.shell import CaptureShell

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        CaptureShell().run_all(nb, exc_stop=True, preproc=maintainers_only)
    finally:
        os.chdir(cwd)


def show_doc_output(output: dict, links: dict, pages: set[str]) -> dict:
    """A `show_doc` entry with its docstring's names linked, without the rule nbdev puts above it (Quarto draws it;
    in a cell's output it is misplaced) and without its link to the source on the git host (the API reference links
    each name to its source in the site itself)."""
    markdown = output.get("data", {}).get("text/markdown")
    if markdown is not None:
        text = "".join(markdown) if isinstance(markdown, list) else markdown
        text = re.sub(r"\A\s*---\s*\n", "", text)
        text = linkify(_SOURCE_LINK.sub("", text), links, pages)
        output["data"] = {**output["data"], "text/markdown": text}
    return output


def processors():
    """nbdev's documentation processors but its doclinks, which point at the Quarto site's address: the names are
    linked to this site's API reference by `linkify` instead."""
    from nbdev.processors import FilterDefaults, add_links

    class SiteProcessors(FilterDefaults):
        def base_procs(self):
            return [proc for proc in super().base_procs() if proc is not add_links]

    return SiteProcessors()


def stage_notebook(path: Path, links: dict, pages: set[str]):
    "One notebook through nbdev's processors, then into MyST-NB's terms; returns the processed notebook."
    from execnb.nbio import read_nb

    nb = read_nb(path)
    if path.name in EXECUTED:
        execute(nb, path.parent)
    with warnings.catch_warnings():  # nbdev's hint about cells mixing imports and code: a style note, not a fault
        warnings.filterwarnings("ignore", message="Found cells containing imports")
        processors()(nb)
    cells = []
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "raw" and source.lstrip().startswith("---"):
            meta = front_matter(source)
            text = f"# {meta.get('title', path.stem)}"
            if meta.get("description"):
                text += f"\n\n{meta['description']}"
            cells.append(dict(cell_type="markdown", metadata={}, source=linkify(text, links, pages)))
            continue
        if cell.cell_type == "markdown":
            if source.strip().startswith("<!-- WARNING: THIS FILE WAS AUTOGENERATED"):
                continue
            source = source.replace("](../figures/", "](figures/")
            cells.append(dict(cell_type="markdown", metadata={}, source=linkify(source, links, pages)))
            continue
        if cell.cell_type != "code":
            continue
        options, body = cell_options(source)
        tags = [tag for (key, value), tag in OPTION_TAGS.items() if options.get(key) == value]
        outputs = [show_doc_output(dict(o), links, pages) for o in cell.get("outputs", [])]
        if not body and not outputs:
            continue
        cells.append(dict(cell_type="code", metadata={"tags": tags} if tags else {}, source=body,
                          outputs=outputs, execution_count=None))
    return dict(nbformat=4, nbformat_minor=5, cells=cells,
                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                          "language_info": {"name": "python"}})


def constants(module: str) -> list[tuple[str, str | None]]:
    """The public names of `module` that are values, not functions, classes or modules, and have no doc comment
    (autodoc leaves those out): each with its value as the reference shows it, None where that is long or names a
    path of the machine that built the site."""
    import importlib
    import inspect

    from sphinx.pycode import ModuleAnalyzer

    mod = importlib.import_module(module)
    documented = {name for _, name in ModuleAnalyzer.for_module(module).find_attr_docs()}
    found = []
    for name in getattr(mod, "__all__", []):
        value = getattr(mod, name)
        if inspect.isroutine(value) or inspect.isclass(value) or inspect.ismodule(value) or name in documented:
            continue
        shown = repr(value)
        found.append((name, shown if len(shown) <= 100 and str(ROOT) not in shown and "\n" not in shown else None))
    return found


def api_pages(stage: Path) -> list[str]:
    """One reference page per module (autodoc: every public name with its signature and docstring, each constant with
    its value), and their index."""
    from seats_analysis._modidx import d

    api = stage / "api"
    api.mkdir()
    names = []
    for module in d["syms"]:
        names.append(module)
        rst = [f".. automodule:: {module}", ""]
        for name, shown in constants(module):
            rst += [f".. autodata:: {module}.{name}",
                    f"   :annotation: = {shown}" if shown is not None else "   :no-value:", ""]
        (api / f"{module}.md").write_text(f"# `{module}`\n\n```{{eval-rst}}\n" + "\n".join(rst) + "\n```\n")
    toc = "\n".join(f"{name}" for name in names)
    (api / "index.md").write_text("# API reference\n\nEvery public name of each module of the package, with its "
                                  "signature and docstring.\n\n```{toctree}\n:maxdepth: 1\n\n" + toc + "\n```\n")
    return names


def notebooks_page(stage: Path, names: list[str]):
    "The numbered notebooks in reading order, each a page."
    (stage / "notebooks.md").write_text(
        "# Notebooks\n\nEach numbered notebook documents, implements and tests one module of the package; read in "
        "order, they teach the method. The code cells are the notebook's own checks, as the test suite runs them."
        "\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n")


def figures_page(stage: Path) -> list[str]:
    "The figures of `figures/`, each as its PNG with a link to its PDF."
    shutil.copytree(FIGURES, stage / "figures")
    names = sorted(p.stem for p in FIGURES.glob("*.png"))
    text = ["# Figures", "",
            "The figures in the repository's `figures/` folder, as the notebooks write them (PNG to read, PDF for "
            "print)."]
    for name in names:
        text += ["", f"## {name.replace('_', ' ')}", "", f"![{name}](figures/{name}.png)", ""]
        if (FIGURES / f"{name}.pdf").exists():
            text.append(f"{{download}}`PDF <figures/{name}.pdf>`")
    (stage / "figures.md").write_text("\n".join(text) + "\n")
    return names


def stage(stage_dir: Path) -> Path:
    "Write Sphinx's source folder: the processed notebooks, the figures page and the API reference."
    from execnb.nbio import dict2nb, write_nb

    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    links, paths = doclinks(), notebooks()
    pages = {p.stem for p in paths}
    with patch.dict(os.environ, IN_TEST="1"):  # as nbdev's own documentation driver: exporting cells are not re-run
        for path in paths:
            nb = stage_notebook(path, links, pages)
            if path.stem == "index":
                nb["cells"].append(dict(cell_type="markdown", metadata={}, source=(
                    "```{toctree}\n:hidden:\n\nnotebooks\nfigures\napi/index\n```")))
            write_nb(dict2nb(nb), stage_dir / path.name)
    notebooks_page(stage_dir, [p.stem for p in paths if p.stem != "index"])
    figures_page(stage_dir)
    api_pages(stage_dir)
    (stage_dir / "doclinks.json").write_text(json.dumps(links))
    return stage_dir


class _Page(HTMLParser):
    "The links, anchors and output text of one built page."

    def __init__(self):
        super().__init__()
        self.links, self.ids, self.outputs, self._output_depth = [], set(), [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "img", "link", "script"):
                self.links.append(attrs[key])
        if tag == "div" and ("cell_output" in (attrs.get("class") or "") or self._output_depth):
            self._output_depth += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._output_depth:
            self._output_depth -= 1

    def handle_data(self, data):
        if self._output_depth:
            self.outputs.append(data)


MACHINE_PATHS = re.compile(r"(/root/|/home/\w|/tmp/|/work/|[A-Z]:\\\\Users)")
PROGRESS = re.compile(r"(\d+%\|)|(\bit/s\])|(\[\d+:\d+<)")
WARNING = re.compile(r"\b\w*Warning\b|^WARNING", re.M)


def check_site(out: Path = OUT) -> list[str]:
    """Every problem a reader would meet in the built site: a link or image to a missing file or anchor, a machine's
    path anywhere, a progress bar or a warning in a stored output. Empty when the site is sound."""
    pages = {}
    for html in out.rglob("*.html"):
        if "_static" in html.relative_to(out).parts:  # the theme's templates, not pages
            continue
        page = _Page()
        text = html.read_text(encoding="utf-8")
        page.feed(text)
        pages[html.resolve()] = (page, text)
    problems = []
    for html, (page, text) in pages.items():
        name = html.relative_to(out.resolve())
        for target in page.links:
            if re.match(r"^(https?:|mailto:|data:|javascript:)", target):
                continue
            file, fragment = urldefrag(target)
            file = urlparse(file).path
            path = (html.parent / unquote(file)).resolve() if file else html
            if not path.exists():
                problems.append(f"{name}: broken link {target}")
            elif fragment and path.suffix == ".html" and path in pages and fragment not in pages[path][0].ids:
                problems.append(f"{name}: missing anchor {target}")
        if str(ROOT) in text or MACHINE_PATHS.search(text):
            shown = MACHINE_PATHS.search(text.replace(str(ROOT), "/work/"))
            problems.append(f"{name}: shows a machine path: ...{text[max(shown.start() - 80, 0):shown.end() + 40]}...")
        output = "".join(page.outputs)
        if PROGRESS.search(output):
            problems.append(f"{name}: a progress bar in an output")
        if WARNING.search(output):
            problems.append(f"{name}: a warning in an output")
    return problems


def build(out: Path = OUT, work: Path = STAGE) -> Path:
    """Stage the pages into `work/pages`, render them with Sphinx (every warning an error) into `out` and check the
    site; returns `out`. Sphinx's and MyST-NB's working files stay in `work`."""
    from sphinx.cmd.build import build_main

    if work.exists():
        shutil.rmtree(work)
    pages = stage(work / "pages")
    status = build_main(["-b", "html", "-W", "--keep-going", "-q", "-c", str(DOCS), "-d", str(work / "doctrees"),
                         str(pages), str(work / "html")])  # MyST-NB writes beside the HTML folder, so in `work`
    if status:
        raise SystemExit("Sphinx reported problems (above); no site was written")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / "html", out)
    problems = check_site(out)
    if problems:
        raise SystemExit("the built site has problems:\n" + "\n".join(problems))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the site goes (default: _docs/)")
    args = parser.parse_args()
    print(f"site written: {build(args.out) / 'index.html'}")
