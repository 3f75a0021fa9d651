"""The documentation site as a reader sees it: built from the notebooks by the README's docs command, served on
localhost and opened in a real headless browser (Debian's Chromium, driven by Playwright). Needs the `docs` extra and
a Chromium; `.ci/run` installs both. Screenshots of each page are kept in the test's temporary folder."""
import functools
import importlib.util
import re
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("playwright") is None,
                       reason="the docs extra is not installed (pip install -e '.[docs]')"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)"),
]
sys.path.insert(0, str(ROOT / "docs"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The site built into a temporary folder (the build fails on any Sphinx warning or broken link), served locally."
    import build

    root = tmp_path_factory.mktemp("site")
    out = build.build(root / "_docs", work=root / "_proc")
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", root
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def visit(browser, url: str, shot: Path):
    "Open `url`, wait until every image has loaded, keep a screenshot; returns the page and its console errors."
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed to load {request.url}"))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.goto(url, wait_until="load")
    page.wait_for_function("Array.from(document.images).every(image => image.complete)")
    page.screenshot(path=shot, full_page=False)
    return page, errors


def loaded_figures(page) -> list[str]:
    "The sources of the images on the page that the browser decoded (naturalWidth > 0)."
    return page.eval_on_selector_all("img", "images => images.filter(i => i.naturalWidth > 0).map(i => i.src)")


PAPER = "Stage-adaptive Token Selection for Efficient Omni-modal LLMs"
ARXIV = "arXiv:2605.20035"


def reading_order() -> list[str]:
    "Every notebook but `index`, in the reading order the build gives the site."
    import build

    return [stem for _, stems in build.READING_ORDER for stem in stems]


def table_rows(page) -> list[list[str]]:
    "The text of each cell of each row of the page's tables."
    return page.eval_on_selector_all("article table tr",
                                     "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")


def test_home_page(site, browser):
    "The home page names the paper with its arXiv id and lists every notebook, numbered, in the site's reading order."
    url, root = site
    page, errors = visit(browser, f"{url}/index.html", root / "home.png")
    assert page.title().startswith("seats_analysis"), page.title()
    assert page.locator("h1").first.inner_text().strip().startswith("seats_analysis")
    assert any("organism_events_tradeoff.png" in src for src in loaded_figures(page)), loaded_figures(page)
    navigation = " ".join(page.locator("nav").all_inner_texts())
    assert all(section in navigation for section in ("Notebooks", "Figures", "API reference")), navigation
    body = " ".join(page.locator("article").inner_text().split())
    assert PAPER in body and ARXIV in body, body[:3000]
    assert page.locator("a[href='https://arxiv.org/abs/2605.20035']").count() >= 1
    # the reading-order tables: one row per notebook, numbered 1, 2, ... in the build's order, results included
    rows = table_rows(page)
    listed = [(row[0], row[1]) for row in rows if len(row) >= 2 and row[0].isdigit()]
    assert listed == [(str(i), stem) for i, stem in enumerate(reading_order(), 1)], listed
    assert "31_organism_results" in dict(listed).values()
    assert errors == []
    assert (root / "home.png").stat().st_size > 10_000


def test_notebooks_page(site, browser):
    "The notebooks page: every notebook once, numbered in reading order, each with its title and a one-line summary."
    url, root = site
    page, errors = visit(browser, f"{url}/notebooks.html", root / "notebooks.png")
    items = page.eval_on_selector_all("article ol > li", """items => items.map(li => [
        li.parentElement.start + Array.from(li.parentElement.children).indexOf(li), li.innerText.trim(),
        li.querySelector('a') ? li.querySelector('a').getAttribute('href') : null])""")
    assert [number for number, _, _ in items] == list(range(1, len(reading_order()) + 1)), items
    assert [href for _, _, href in items] == [f"{stem}.html" for stem in reading_order()], items
    for _, text, _ in items:
        assert "\n" not in text and len(text.split(": ", 1)[-1]) > 20, text  # one line: title (stem): summary
    assert errors == []


def cells(page) -> list[dict]:
    """The page's code cells in order: their source (folded or not) and their output text. textContent, not innerText:
    a folded cell's source is in the page but not shown."""
    return page.eval_on_selector_all("article div.cell", """cells => cells.map(c => ({
        source: (c.querySelector('.cell_input') || {textContent: ''}).textContent,
        output: Array.from(c.querySelectorAll('.cell_output')).map(o => o.textContent).join('\\n'),
        folded: !!c.querySelector('details') && !(c.querySelector('details').open)}))""")


CHECK = re.compile(r"\b(test_eq|test_close|test_fail|assert)\b")


def test_method_page_opens_with_an_example(site, browser):
    """09_seats shows, before its first check, an executed example on the organism: the answers, `print(run)` with the
    retention reached and the FLOPs, and `run.retention, run.flops` as values."""
    url, root = site
    page, errors = visit(browser, f"{url}/09_seats.html", root / "seats_example.png")
    found = cells(page)
    first_check = next(i for i, cell in enumerate(found) if CHECK.search(cell["source"]))
    shown = "\n".join(cell["output"] for cell in found[:first_check])
    assert re.search(r"SEATS at R10: \['[A-D]', '[A-D]'\]  unpruned: \['[A-D]', '[A-D]'\]", shown), shown[:2000]
    assert re.search(r"PruningRun\(seats: 1 prefill\(s\); retention averaged over layers: video 0\.\d+, audio 0\.\d+; "
                     r"prefill FLOPs \d\.\d+e\+\d+ \(\d+\.\d+x fewer than full\)", shown), shown[:2000]
    assert re.search(r"\(\{'video': 0\.\d+, 'audio': 0\.\d+\}, \d+\.\d+, \d+\.\d+\)", shown), shown[:2000]
    # the example is on top of the page, its checks below: the first check comes after the example's heading
    headings = page.eval_on_selector_all("article h2", "hs => hs.map(h => h.innerText.trim())")
    assert headings[0].startswith("An example on the built-in organism"), headings
    assert errors == []


def test_long_checks_are_folded(site, browser):
    "On the results page and the method page, no check of more than 15 lines is shown unfolded."
    url, root = site
    for name in ("09_seats", "31_organism_results"):
        page, errors = visit(browser, f"{url}/{name}.html", root / f"{name}_checks.png")
        long_checks = [cell for cell in cells(page) if CHECK.search(cell["source"])
                       and cell["source"].strip().count("\n") + 1 > 15]
        assert long_checks and all(cell["folded"] for cell in long_checks), name
        assert errors == []


def test_results_page(site, browser):
    """31_organism_results: the findings before any table, figures with their caption and a link to their full size,
    no NaN in a table, no table or code wider than the window, and the checks last."""
    from seats_analysis.catalog import ORGANISMS

    url, root = site
    page, errors = visit(browser, f"{url}/31_organism_results.html", root / "results.png")
    headings = page.eval_on_selector_all("article h2", "hs => hs.map(h => h.innerText.trim())")
    findings = [h for h in headings if re.fullmatch(r"What the .+ organism shows", h)]
    assert findings and headings[0] == findings[0] and headings[-1].startswith("Checks"), headings
    text = page.locator("article").inner_text()
    assert text.index("The blocks: shallow 1-5") < text.index("The same curves as numbers"), headings
    assert "NaN" not in page.eval_on_selector_all("article table", "ts => ts.map(t => t.innerText).join(' ')")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # wide tables scroll inside the column
    figures = page.eval_on_selector_all("figure.sa-figure", """fs => fs.map(f => ({
        caption: f.querySelector('figcaption').innerText, full: f.querySelector('a').getAttribute('href')}))""")
    shown = ("qwen2_5", "qwen2_5_seed2", "qwen3")  # the events organisms, the second seed among Qwen2.5's findings
    expected = [f"figures/{ORGANISMS[organism]}_{kind}.png" for organism in shown for kind in ("dependency", "tradeoff")]
    assert sorted(figure["full"] for figure in figures) == sorted(expected), figures  # curves and trade-off of each
    assert all(len(figure["caption"]) > 60 for figure in figures), figures
    assert errors == []


def test_glossary(site, browser):
    "The glossary defines the four settings with their video and audio targets, as the package has them, and '-om'."
    from seats_analysis.catalog import RATIO_PAIRS

    url, root = site
    page, errors = visit(browser, f"{url}/00_glossary.html", root / "glossary.png")
    terms = page.eval_on_selector_all("article dt", "ts => ts.map(t => t.innerText.trim())")
    om_term = re.compile(r'^["\u201c]-om["\u201d]')  # Sphinx may curl the quotes
    assert "R35, R25, R15, R10" in terms and any(om_term.match(term) for term in terms), terms
    rows = table_rows(page)
    for name, (video, audio) in RATIO_PAIRS.items():
        assert [name, f"{video:.2f}", f"{audio:.2f}"] in rows, (name, rows)
    om = page.locator("article dt", has_text=om_term).locator("xpath=following-sibling::dd[1]").inner_text()
    assert "audio" in om and "video" in om, om
    for term in ("Thinker", "Drop layer", "Retention", "Boundary k", "Shallow, middle and late blocks"):
        assert term in terms, (term, terms)
    assert errors == []


def test_no_page_says_spec(site):
    "No page of the site refers to a specification that is not part of it."
    url, root = site
    spec = re.compile(r"\bSPEC\b")
    pages = [p for p in (root / "_docs").rglob("*.html") if "_static" not in p.parts]
    assert len(pages) > 40
    found = [p.name for p in pages if spec.search(p.read_text(encoding="utf-8"))]
    assert not found, found


def test_member_names_link_to_their_own_entry(site, browser):
    """A member's bare name links nowhere (it is too often another thing: `forward` in 02 is the model's, `stage_one`
    in `seats`' docstring its parameter); with its class it links to its entry."""
    import build

    links = build.doclinks()
    assert "forward" not in links and "stage_one" not in links
    assert links["DropRun.forward"] == "seats_analysis.engine.DropRun.forward"
    assert links["SeatsSelectors.stage_one"] == "seats_analysis.seats.SeatsSelectors.stage_one"
    url, root = site
    page, errors = visit(browser, f"{url}/02_engine.html", root / "engine.png")
    assert page.locator("article a", has_text="forward").evaluate_all(
        "links => links.filter(a => a.innerText.trim() === 'forward').length") == 0
    page, errors = visit(browser, f"{url}/api/seats_analysis.seats.html", root / "api_seats.png")
    entry = page.locator("dt[id='seats_analysis.seats.seats'] + dd")
    assert entry.locator("code", has_text="stage_one").evaluate_all(  # `stage_one`, not `stage_one_selection=...`
        "codes => codes.filter(c => c.innerText.trim() === 'stage_one').length") == 1
    assert entry.locator("a", has_text="stage_one").count() == 0


def test_code_is_not_clipped(site, browser):
    "At 1280 px, a code line of up to 110 characters fits its cell on the method pages (longer ones scroll)."
    url, root = site
    for name in ("09_seats", "10_baselines", "02_engine"):
        page, errors = visit(browser, f"{url}/{name}.html", root / f"{name}_code.png")
        clipped = page.eval_on_selector_all("article .cell_input pre", """pres => pres.filter(p =>
            Math.max(...p.textContent.split('\\n').map(l => l.length)) <= 110 && p.scrollWidth > p.clientWidth + 1)
            .map(p => p.textContent.slice(0, 80))""")
        assert clipped == [], (name, clipped)


def test_method_page(site, browser):
    "The SEATS notebook: its title, prose, its exported names' `show_doc` entries with signatures, no console errors."
    url, root = site
    page, errors = visit(browser, f"{url}/09_seats.html", root / "seats.png")
    assert page.locator("h1").first.inner_text().strip().startswith("SEATS")
    body = page.locator("article").inner_text()
    assert "def seats(" in body and "video_ratio:float" in body, body[:2000]
    assert "Stage I" in body and "#|" not in body
    sidebar = page.locator("#pst-primary-sidebar").inner_text()  # every notebook, in reading order
    assert sidebar.index("Token layout") < sidebar.index("SEATS") < sidebar.index("What the organisms show"), sidebar
    # a backticked name of the package in the prose links to its API entry, and the entry exists
    href = page.locator("a[href*='seats_analysis.schedule.Schedule.plan']").first.get_attribute("href")
    assert href.startswith("api/seats_analysis.schedule.html#"), href
    assert errors == []


def test_api_entry(site, browser):
    "An API entry: its signature with the parameters' names and defaults, and its docstring."
    url, root = site
    page, errors = visit(browser, f"{url}/api/seats_analysis.seats.html#seats_analysis.seats.seats", root / "api.png")
    entry = page.locator("dt[id='seats_analysis.seats.seats']")
    signature = " ".join(entry.inner_text().split())
    assert signature.startswith("seats_analysis.seats.seats(thinker, schedule, video_ratio: float"), signature
    assert "compiled: bool = False" in signature, signature
    assert "three stages" in page.locator("dt[id='seats_analysis.seats.seats'] + dd").inner_text()
    assert errors == []


def test_figures_page(site, browser):
    """Every figure of `figures/` is on the figures page and loaded, with a caption, a link to its full-size PNG (which
    loads) and its PDF, and drawn on a 1280 px window at no less than two thirds of its own width."""
    url, root = site
    page, errors = visit(browser, f"{url}/figures.html", root / "figures.png")
    expected = sorted(p.name for p in (ROOT / "figures").glob("*.png"))
    assert sorted(src.rsplit("/", 1)[-1] for src in loaded_figures(page)) == expected
    figures = page.eval_on_selector_all("article figure", """fs => fs.map(f => {
        const img = f.querySelector('img');
        return {src: img.getAttribute('src'), natural: img.naturalWidth, drawn: img.getBoundingClientRect().width,
                caption: f.querySelector('figcaption') ? f.querySelector('figcaption').innerText.trim() : '',
                links: Array.from(f.querySelectorAll('a')).map(a => a.getAttribute('href'))};
    })""")
    assert sorted(f["src"].rsplit("/", 1)[-1] for f in figures) == expected, figures
    for figure in figures:
        name = figure["src"].rsplit("/", 1)[-1]
        assert len(figure["caption"]) > 60, figure  # a sentence, not the file's name
        assert f"figures/{name}" in figure["links"] and f"figures/{name[:-4]}.pdf" in figure["links"], figure
        assert figure["drawn"] >= 2 / 3 * figure["natural"] - 1, figure
        for link in (f"figures/{name}", f"figures/{name[:-4]}.pdf"):
            assert page.request.get(f"{url}/{link}").status == 200, link
    assert errors == []


def test_check_site_finds_what_a_reader_would_stumble_on(tmp_path):
    "The build's crawl catches a broken link, a missing anchor, a machine path, a progress bar and a warning."
    import build

    (tmp_path / "a.html").write_text('<a id="x" href="b.html#nowhere">b</a><a href="missing.html">m</a>'
                                     '<img src="gone.png"><p>/root/data</p>'
                                     '<div class="cell_output"><pre>50%|#####| 5/10 [00:01&lt;00:01, 4.2it/s]</pre>'
                                     '<pre>UserWarning: careful</pre></div>')
    (tmp_path / "b.html").write_text('<a href="a.html#x">a</a><div class="cell_output"><pre>fine</pre></div>')
    problems = build.check_site(tmp_path)
    assert [p.split(":")[0] for p in problems] == ["a.html"] * 6, problems
    assert any("missing anchor b.html#nowhere" in p for p in problems)
    assert any("broken link missing.html" in p for p in problems) and any("broken link gone.png" in p for p in problems)
    assert any("machine path" in p for p in problems) and any("progress bar" in p for p in problems)
    assert any("a warning in an output" in p for p in problems)


def test_every_public_name_has_an_entry(site):
    "The API reference has an entry (an anchor a link can reach) for every name of every module's `__all__`."
    import importlib

    from seats_analysis._modidx import d

    url, root = site
    missing = []
    for module in d["syms"]:
        page = (root / "_docs" / "api" / f"{module}.html").read_text(encoding="utf-8")
        missing += [f"{module}.{name}" for name in importlib.import_module(module).__all__
                    if f'id="{module}.{name}"' not in page]
    assert not missing, missing


def test_the_build_skips_maintainers_cells():
    "A notebook the build executes runs without its maintainers' cells (they rewrite shipped files)."
    import build
    from fastcore.basics import AttrDict

    cell = lambda source, tags=(): AttrDict(source=source, metadata={"tags": list(tags)})
    assert build.maintainers_only(cell("#| eval: false\nrun_benchmark(path)"))
    assert build.maintainers_only(cell("regenerate()", tags=["skip-execution"]))
    assert not build.maintainers_only(cell("# eval: false is only a comment here\nx = 1"))
    assert not build.maintainers_only(cell("#| echo: false\nshow_doc(seats)"))
