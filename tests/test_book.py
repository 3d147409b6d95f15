"""The course website: built from the executed notebooks, checked in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tutorial_lib import book

REPO = Path(__file__).resolve().parent.parent
# a 1x1 PNG, base64, as a notebook stores it
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5"
         "ErkJggg==")  # fmt: skip
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO / "build" / "test-artifacts"


def test_math_becomes_mathml_outside_code():
    text = "a $x_1$ b $$\\sum_m p_m$$ `$not math$`\n```\n$code$\n```\ncosts $5 and $6"
    out = book.rewrite_math(text)
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in out
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in out
    assert "<msub><mi>x</mi><mn>1</mn></msub>" in out and "$x_1$" not in out
    assert "`$not math$`" in out and "\n$code$\n" in out and "costs $5 and $6" in out
    assert "*" not in book.tex_to_mathml("a * b_{c}")  # nothing Markdown would read as emphasis
    wrapped = book.rewrite_math("blocks: $\\alpha n /\n   (M\\gamma)$ weights")  # two lines
    assert "$" not in wrapped and "<mi>&#x003B3;</mi>" in wrapped  # gamma
    assert book.rewrite_math("$5 and\n\n$6") == "$5 and\n\n$6"  # never across paragraphs


def test_chapter_pages_drop_setup_cells_and_link_notebook_colab_binder(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    badge = "[![Open In Colab](https://colab/badge.svg)](https://colab/nb.ipynb)"
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# 1. Title\n\n{badge}\n\nText $a$."),
                      nbformat.v4.new_code_cell("!pip install course"),
                      nbformat.v4.new_code_cell("print(1)")]  # fmt: skip
    notebook.cells[1].metadata["tags"] = [book.SETUP_TAG]
    nbformat.write(notebook, tmp_path / "01_x.ipynb")
    title = book.notebook_to_chapter(tmp_path / "01_x.ipynb", tmp_path)
    page = (tmp_path / "01_x.md").read_text()
    assert title == "1. Title" and "pip install" not in page and "print(1)" in page
    assert "badge.svg" not in page and "<math" in page
    links = book.chapter_links("01_x")
    assert page.index(links) > page.index("# 1. Title")
    # a figure gets alt text from the text above it, not nbconvert's "png"
    figure = nbformat.v4.new_code_cell("plot()")
    figure.outputs = [nbformat.v4.new_output("display_data", {"image/png": PIXEL, "text/plain":
                                                               "<Figure>"})]  # fmt: skip
    notebook.cells += [nbformat.v4.new_markdown_cell("## 2. The risk-coverage curve\n\nBelow."),
                       figure]  # fmt: skip
    nbformat.write(notebook, tmp_path / "01_x.ipynb")
    book.notebook_to_chapter(tmp_path / "01_x.ipynb", tmp_path)
    page = (tmp_path / "01_x.md").read_text()
    assert "![Figure: 2. The risk-coverage curve](01_x_files/" in page and "![png]" not in page
    assert (
        "github.com" in links and "colab.research.google.com" in links and "mybinder.org" in links
    )


def test_the_glossary_has_an_entry_per_metric_in_the_tables_order():
    from tutorial_lib.metric_registry import METRICS, SECTIONS

    page = book.glossary()
    positions = [page.index(f"- **{metric.label}**") for metric in METRICS.values()]
    assert positions == sorted(positions)  # by family, as the tables' rows
    headings = [page.index(f"## {section.heading}") for section in SECTIONS]
    assert headings == sorted(headings)
    ood = page[page.index("- **OOD predictive entropy**") :].splitlines()[0]
    assert "Descriptive" in ood and "Higher is better" not in ood
    assert "**Conformal set**" in page  # terms with no table row stay
    assert "$" not in book.rewrite_math(page)  # every formula became MathML


def test_the_book_is_built_without_torch():
    import subprocess
    import sys

    code = "import sys, tutorial_lib.book as b; b.glossary(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The book built into a scratch root, served on a local port."""
    from conftest import copy_course

    root = copy_course(tmp_path_factory.mktemp("book"))
    index = book.build_book(root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(index.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", index.parent
    server.shutdown()


def test_book_sources_are_generated(site):
    _, folder = site
    summary = (folder.parent / "book-src" / "SUMMARY.md").read_text()
    for name in ("01_baseline.md", "05_grouping_loss.md", "glossary.md", "references.md"):
        assert f"({name})" in summary
    assert (folder / "01_baseline.html").exists() and (folder / "glossary.html").exists()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium is needed: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh profile, not in the repo
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1280,1600", f"--user-data-dir={profile}"]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request made
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))


def requested_urls(browser) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's DevTools network events)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_every_page_in_a_real_browser(site, browser):
    base, folder = site
    pages = ["index", "introduction", *CHAPTERS, "glossary", "references"]
    links: set[str] = set()
    assert len(CHAPTERS) >= 6
    for page in pages:
        browser.get_log("performance")  # forget the previous page's requests
        browser.get(f"{base}/{page}.html")
        assert "From Deep Ensembles to Packed-Ensembles" in browser.title, page
        network = [u for u in requested_urls(browser) if u.startswith(("http", "ws"))]
        outside = [u for u in network if not u.startswith(base)]  # chrome:// is the browser
        assert not outside, f"{page} loads resources from outside the site: {outside}"
        text = browser.execute_script("return document.querySelector('main').innerText")
        assert "\\(" not in text and "$$" not in text, f"{page}: raw TeX on the page"
        heading = browser.execute_script("return document.querySelector('main h1').textContent")
        assert heading.strip(), page
        images = browser.execute_script(
            "return Array.from(document.querySelectorAll('main img'))"
            ".map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);"
        )
        assert all(ok for _, ok in images), [src for src, ok in images if not ok]
        if page in CHAPTERS:
            assert images, f"{page}: no figure (are the notebooks' outputs stored?)"
            tables = browser.execute_script("return document.querySelectorAll('main table').length")
            assert tables >= 1, f"{page}: no metric table"
            hrefs = browser.execute_script(
                "return Array.from(document.querySelectorAll('main a')).map(a => a.href)"
            )
            for host in ("github.com", "colab.research.google.com", "mybinder.org"):
                assert any(host in h for h in hrefs), f"{page}: no link to {host}"
            assert "pip install -q -e" not in text, f"{page}: the Colab set-up cell is shown"
        if page in ("glossary", "02_deep_ensembles", "05_grouping_loss"):
            formulas = browser.execute_script(
                "return document.querySelectorAll('main math').length"
            )
            assert formulas > 0, f"{page}: no MathML formula"
        links |= set(browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
            ".filter(h => h.startsWith(location.origin));"
        ))  # fmt: skip
    broken = []
    for link in sorted({link.split("#")[0] for link in links}):
        try:
            urllib.request.urlopen(link, timeout=10).close()
        except urllib.error.URLError as err:
            broken.append(f"{link}: {err}")
    assert not broken, broken
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{base}/03_packed_ensembles.html")
    assert browser.save_screenshot(str(ARTIFACTS / "chapter_03_packed_ensembles.png"))
