"""The documentation site as a reader sees it: built from the notebooks by the README's docs command, served on
localhost and opened in a real headless browser (Debian's Chromium, driven by Playwright). Needs the `docs` extra and
a Chromium; `.ci/run` installs both. Screenshots of each page are kept in the test's temporary folder."""
import functools
import importlib.util
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


def test_home_page(site, browser):
    url, root = site
    page, errors = visit(browser, f"{url}/index.html", root / "home.png")
    assert page.title().startswith("seats_analysis"), page.title()
    assert page.locator("h1").first.inner_text().strip().startswith("seats_analysis")
    assert any("organism_tradeoff.png" in src for src in loaded_figures(page)), loaded_figures(page)
    navigation = " ".join(page.locator("nav").all_inner_texts())
    assert all(section in navigation for section in ("Notebooks", "Figures", "API reference")), navigation
    assert errors == []
    assert (root / "home.png").stat().st_size > 10_000


def test_method_page(site, browser):
    "The SEATS notebook: its title, prose, its exported names' `show_doc` entries with signatures, no console errors."
    url, root = site
    page, errors = visit(browser, f"{url}/07_seats.html", root / "seats.png")
    assert page.locator("h1").first.inner_text().strip().startswith("SEATS")
    body = page.locator("article").inner_text()
    assert "def seats(" in body and "video_ratio:float" in body, body[:2000]
    assert "Stage I" in body and "#|" not in body
    sidebar = page.locator("#pst-primary-sidebar").inner_text()  # every notebook, in reading order
    assert sidebar.index("Token layout") < sidebar.index("SEATS") < sidebar.index("What the model organism shows"), sidebar
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
    "Every figure of `figures/` is on the figures page, and every one loaded."
    url, root = site
    page, errors = visit(browser, f"{url}/figures.html", root / "figures.png")
    expected = sorted(p.name for p in (ROOT / "figures").glob("*.png"))
    assert sorted(src.rsplit("/", 1)[-1] for src in loaded_figures(page)) == expected
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
