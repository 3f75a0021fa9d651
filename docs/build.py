"""Build the documentation site from the notebooks: `python docs/build.py` writes it into `_docs/` (nbdev's `doc_path`).

nbdev renders its sites with Quarto, which cannot be installed without downloading its binary. This build keeps
nbdev's own half of that pipeline and replaces only the renderer:

1. every notebook goes through nbdev's processors (`FilterDefaults`, what `nbdev_docs` runs before Quarto): front
   matter from the title cell, `#| hide` cells removed, a `show_doc` entry for every exported name, executed;
2. what Quarto would read from the processed notebook is said to Sphinx and MyST-NB in their terms: the `#|` cell
   options become MyST-NB's cell tags (`echo: false` hides the code, `include: false` the cell), the title cell a
   heading, a backticked name of the package a cross-reference to its entry in the API reference (nbdev's doclinks);
3. Sphinx renders the notebooks with their stored outputs (the few listed in `EXECUTED`, cheap and deterministic,
   are run first, and the method notebooks of `OPENINGS` run their opening example) in the reading order of
   `READING_ORDER`, `index` as the home page, the figures of `figures/` (each with the caption a notebook gives it and
   a link to its full size) and an API reference of every public name (autodoc: signature and docstring); long
   checks are folded (`#| code-fold: true`, or a check of more than `FOLD_LINES` lines); any Sphinx warning fails
   the build;
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
EXECUTED = ("index.ipynb", "31_organism_results.ipynb", "31a_imposed_organisms.ipynb")
# Method notebooks whose opening example, the cells above their first exported definition, the build runs: a few
# seconds on the built-in organism, so that the page shows what the example prints.
OPENINGS = ("09_seats.ipynb", "10_baselines.ipynb", "10a_dycoke.ipynb", "10b_omnizip.ipynb")
# The notebooks in the order the data flows, which is their numbering (a notebook's module imports only modules of
# earlier notebooks), in sections: what the words mean, the foundations, the engine and the probe that finds the
# blocks, SEATS, what it is compared with, evaluation, the organisms, what it finds, the clients. The build fails on
# a notebook left out, and on one out of numbered order.
READING_ORDER = (
    ("Start here", ("00_glossary", "00_arithmetic")),
    ("Foundations", ("00_layout", "00a_compat", "00b_checks", "00c_loading", "00d_catalog", "00e_storage", "01_media",
                     "01a_stand_ins")),
    ("Where the blocks come from", ("02_engine", "03_probe", "04_schedule", "05_blocks")),
    ("The method", ("06_pre_llm", "06a_encoder_attention", "07_inner_llm", "08_cost", "08a_run", "09_seats")),
    ("The methods compared", ("10_baselines", "10a_dycoke", "10b_omnizip", "11_registry", "11a_methods")),
    ("Evaluating", ("12_harness", "13_stats", "14_parsers", "14a_benchmarks", "14b_prompts", "14c_scoring",
                    "15_tables", "16_evaluate", "17_figures")),
    ("The organisms", ("20_synth", "20a_events", "21_organism", "22_testing", "23_plan")),
    ("Results", ("30_demo", "31_organism_results", "31a_imposed_organisms", "32_ablations", "33_matched",
                 "34_dycoke_study", "35_bench")),
    ("Clients", ("40_lmms_eval", "41_cli", "41a_main")),
)
FOLD_LINES = 8  # a check cell longer than this is folded under its prose (the reader opens it to see the code)
OPTION_TAGS = {("echo", "false"): "remove-input", ("output", "false"): "remove-output",
               ("include", "false"): "remove-cell"}
_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_BACKTICKS = re.compile(r"(?<![\[`\w])`(\w[\w.]*)(?:\(\))?`(?![`\]])")
_FENCE = re.compile(r"^(```|~~~)")
_SOURCE_LINK = re.compile(r"\[source\]\([^)]*\)(\{[^}]*\})?")
_CHECK = re.compile(r"\b(test_eq|test_ne|test_close|test_fail|test_is|assert)\b")
_FIGURE = re.compile(r"^!\[([^\]]+)\]\((?:\.\./)?figures/([\w.-]+)\.png\)\s*$")


def notebooks() -> list[Path]:
    "The notebooks in page order: `index` first, then in `READING_ORDER`; a notebook it leaves out stops the build."
    found = {p.stem: p for p in NBS.glob("*.ipynb") if not p.name.startswith(("_", "."))}
    order = [stem for _, stems in READING_ORDER for stem in stems]
    missing, unknown = sorted(set(found) - set(order) - {"index"}), sorted(set(order) - set(found))
    if missing or unknown or len(order) != len(set(order)):
        raise SystemExit(f"READING_ORDER in docs/build.py must list every notebook once: missing {missing}, "
                         f"no such notebook {unknown}")
    numbered = [stem for _, stems in READING_ORDER[1:] for stem in stems]  # after the pages that hold no module
    if numbered != sorted(numbered):
        raise SystemExit(f"READING_ORDER in docs/build.py must follow the notebooks' numbering: {numbered}")
    return [found["index"]] + [found[stem] for stem in order]


def doclinks() -> dict[str, str]:
    """Each name a reader may write in backticks, mapped to the full name of its API entry: the full dotted name of
    every public module and name of the package, a name without its module (`Schedule.plan`) where only one module
    exports it (a member only with its class), and a module's name without the package (`plan`; `seats` is the
    function the module is named for)."""
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
            # a member is reached with its class (`Schedule.plan`): its bare name (`forward`, `stage_one`) is too
            # often something else, a method of another class or a parameter, to be linked to it
            for i in range(max(len(parts) - 1, 1)):
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


def exported(cell) -> bool:
    "Whether a cell is an exported definition (`#| export`, `#| exports`, `#| exporti`)."
    return cell.cell_type == "code" and bool(re.search(r"^#\|\s*export[si]?\s*$", cell.source, re.M))


def opening(nb) -> set[int]:
    "The indices of a notebook's opening example: its code cells above the first exported definition."
    first = next((i for i, cell in enumerate(nb.cells) if exported(cell)), len(nb.cells))
    return {i for i, cell in enumerate(nb.cells[:first]) if cell.cell_type == "code"}


def execute(nb, folder: Path, only: set[int] | None = None):
    """Run a notebook as nbdev's tests do, from its own folder and without its maintainers' cells (with `only`, just
    the cells of those indices), with its outputs stored in the cells."""
    from execnb.shell import CaptureShell

    index = {id(cell): i for i, cell in enumerate(nb.cells)}
    skip = lambda cell: maintainers_only(cell) or (only is not None and index[id(cell)] not in only)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        CaptureShell().run_all(nb, exc_stop=True, preproc=skip)
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


def png_width(path: Path) -> int:
    "The width in pixels of a PNG file, from its header."
    import struct

    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def figure_html(name: str, caption: str) -> str:
    """One figure of `figures/` as a page shows it: the PNG, linked to its full-size file, under it the caption and
    links to the full-size PNG and the PDF. It takes the width of the text, but never less than two thirds of its own
    width (a wider figure scrolls sideways) nor more than its own width: its text stays legible."""
    import html

    width = png_width(FIGURES / f"{name}.png")
    image = (f'<a class="sa-figure-image" href="figures/{name}.png"><img src="figures/{name}.png" '
             f'alt="{html.escape(caption)}" style="min-width: {-(-2 * width // 3)}px; max-width: {width}px"></a>')
    files = f'<a href="figures/{name}.png">full size (PNG, {width} px wide)</a>'
    if (FIGURES / f"{name}.pdf").exists():
        files += f', <a href="figures/{name}.pdf">PDF</a>'
    text = html.escape(caption).replace("`", "")
    return (f'<figure class="sa-figure" id="figure-{name.replace("_", "-")}">'
            f'<div class="sa-figure-scroll">{image}</div>'
            f'<figcaption>{text} <span class="sa-figure-files">({files})</span></figcaption></figure>')


def figures_in(markdown: str, found: list) -> str:
    """A Markdown cell with each figure of `figures/` on a line of its own (`![caption](../figures/name.png)`) as a
    captioned figure (`figure_html`); appends `(name, caption)` to `found`."""
    out = []
    for line in markdown.split("\n"):
        match = _FIGURE.match(line.strip())
        if match and (FIGURES / f"{match.group(2)}.png").exists():
            found.append((match.group(2), match.group(1)))
            line = figure_html(match.group(2), match.group(1))
        out.append(line)
    return "\n".join(out)


def folded(options: dict, body: str) -> bool:
    "Whether a code cell's source is folded away: `#| code-fold: true`, or a check longer than `FOLD_LINES` lines."
    if "code-fold" in options:
        return options["code-fold"] == "true"
    return bool(_CHECK.search(body)) and body.count("\n") + 1 > FOLD_LINES


def stage_notebook(path: Path, links: dict, pages: set[str], found: dict | None = None):
    """One notebook through nbdev's processors, then into MyST-NB's terms; returns the processed notebook. `found`
    collects its title and description (`found["meta"]`) and its figures with their captions (`found["figures"]`)."""
    from execnb.nbio import read_nb

    found = {} if found is None else found
    found.setdefault("figures", [])
    nb = read_nb(path)
    if path.name in EXECUTED:
        execute(nb, path.parent)
    elif path.name in OPENINGS:
        execute(nb, path.parent, only=opening(nb))
    with warnings.catch_warnings():  # nbdev's hint about cells mixing imports and code: a style note, not a fault
        warnings.filterwarnings("ignore", message="Found cells containing imports")
        processors()(nb)
    cells = []
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "raw" and source.lstrip().startswith("---"):
            meta = found["meta"] = front_matter(source)
            text = f"# {meta.get('title', path.stem)}"
            if meta.get("description"):
                text += f"\n\n{meta['description']}"
            cells.append(dict(cell_type="markdown", metadata={}, source=linkify(text, links, pages)))
            continue
        if cell.cell_type == "markdown":
            if source.strip().startswith("<!-- WARNING: THIS FILE WAS AUTOGENERATED"):
                continue
            source = figures_in(source, found["figures"]).replace("](../figures/", "](figures/")
            cells.append(dict(cell_type="markdown", metadata={}, source=linkify(source, links, pages)))
            continue
        if cell.cell_type != "code":
            continue
        options, body = cell_options(source)
        tags = [tag for (key, value), tag in OPTION_TAGS.items() if options.get(key) == value]
        if folded(options, body):
            tags.append("hide-input")
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


def notebooks_page(stage: Path, meta: dict[str, dict]):
    """The notebooks in reading order, numbered, each with its title and its one-line description, under the sections of
    `READING_ORDER` (the sidebar's captions)."""
    text = ["# Notebooks", "",
            "Each numbered notebook documents, implements and tests one module of the package; read in this order, "
            "they teach the method, from the words it uses to what it finds. A method notebook opens with an example "
            "on the built-in organism; the code cells after it are the notebook's own checks, as the test suite runs "
            "them (the long ones folded: *Show code cell source* opens them)."]
    number = 0
    for section, stems in READING_ORDER:
        text += ["", f"## {section}", ""]
        for stem in stems:
            number += 1
            title = meta[stem].get("title", stem)
            description = meta[stem].get("description", "").strip()
            text.append(f"{number}. [{title}]({stem}.ipynb) (`{stem}`): {description}")
        text += ["", "```{toctree}", ":hidden:", f":caption: {section}", "", *stems, "```"]
    (stage / "notebooks.md").write_text("\n".join(text) + "\n")


def figures_page(stage: Path, shown: dict[str, tuple[str, str]]):
    """The figures of `figures/`, each with the caption and a link to the notebook that shows it, and links to its
    full-size PNG and its PDF. A figure that no notebook shows with a caption stops the build."""
    names = sorted(p.stem for p in FIGURES.glob("*.png"))
    uncaptioned = [name for name in names if name not in shown]
    if uncaptioned:
        raise SystemExit(f"no notebook shows {uncaptioned} with a caption (a line `![caption](../figures/NAME.png)` "
                         "in a Markdown cell): the figures page has no caption for them")
    text = ["---", "html_theme.sidebar_secondary.remove: true", "---", "", "# Figures", "",
            "The figures in the repository's `figures/` folder, as the notebooks draw them, each with its caption and "
            "the notebook that discusses it. Each image links to its full-size PNG; the PDF is for print."]
    for name in names:
        caption, page = shown[name]
        text += ["", f"## {name.replace('_', ' ')}", "", figure_html(name, caption), "",
                 f"Shown and discussed in [`{page}`]({page}.ipynb)."]
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
    meta, shown = {}, {}
    with patch.dict(os.environ, IN_TEST="1"):  # as nbdev's own documentation driver: exporting cells are not re-run
        for path in paths:
            found = {}
            nb = stage_notebook(path, links, pages, found)
            meta[path.stem] = found.get("meta", {})
            for name, caption in found["figures"]:
                if path.stem != "index":  # the home page repeats a figure a notebook discusses
                    shown.setdefault(name, (caption, path.stem))
            if path.stem == "index":
                nb["cells"].append(dict(cell_type="markdown", metadata={}, source=(
                    "```{toctree}\n:hidden:\n\nnotebooks\nfigures\napi/index\n```")))
            write_nb(dict2nb(nb), stage_dir / path.name)
    notebooks_page(stage_dir, meta)
    shutil.copytree(FIGURES, stage_dir / "figures")
    figures_page(stage_dir, shown)
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

    from seats_analysis.testing import released_shells

    if work.exists():
        shutil.rmtree(work)
    with released_shells():  # each notebook's shell ends with its staging, not at the process's exit
        pages = stage(work / "pages")
    status = build_main(["-b", "html", "-W", "--keep-going", "-q", "-c", str(DOCS), "-d", str(work / "doctrees"),
                         str(pages), str(work / "html")])  # MyST-NB writes beside the HTML folder, so in `work`
    if status:
        raise SystemExit("Sphinx reported problems (above); no site was written")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / "html", out)
    shutil.copytree(FIGURES, out / "figures", dirs_exist_ok=True)  # the figures' full-size files, linked from the pages
    problems = check_site(out)
    if problems:
        raise SystemExit("the built site has problems:\n" + "\n".join(problems))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the site goes (default: _docs/)")
    args = parser.parse_args()
    print(f"site written: {build(args.out) / 'index.html'}")
