"""The course website: built from the executed notebooks, checked in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tutorial_lib import book

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO / "build" / "test-artifacts"


def test_math_and_badge_rewriting():
    text = "a $x_1$ b $$\\sum_m p_m$$ `$not math$`\n```\n$code$\n```\ncosts $5 and $6"
    out = book.rewrite_math(text)
    assert "\\\\(x_1\\\\)" in out and "\\\\[\\sum_m p_m\\\\]" in out
    assert "`$not math$`" in out and "\n$code$\n" in out
    badge = "[![Open In Colab](https://x/badge.svg)](https://colab/nb.ipynb)"
    assert book.rewrite_badges(badge) == "[Open In Colab](https://colab/nb.ipynb)"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The book built into a scratch root, served on a local port."""
    root = tmp_path_factory.mktemp("book")
    shutil.copy(REPO / "book.toml", root / "book.toml")
    index = book.build_book(REPO / "notebooks", root)
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
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium is needed: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = ARTIFACTS.parent / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1280,1600", f"--user-data-dir={profile}"]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


CHAPTERS = [
    "01_baseline", "02_deep_ensembles", "03_packed_ensembles",
    "04_selective_classification", "05_grouping_loss", "06_distribution_shift",
]  # fmt: skip


def test_every_page_in_a_real_browser(site, browser):
    base, folder = site
    pages = ["index", "introduction", *CHAPTERS, "glossary", "references"]
    links: set[str] = set()
    for page in pages:
        browser.get(f"{base}/{page}.html")
        assert "From Deep Ensembles to Packed-Ensembles" in browser.title, page
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
