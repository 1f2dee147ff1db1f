"""The built site works offline in a real browser.

Copies the book's sources into a temporary folder, executes the notebooks there with the smoke
parameters, builds the site with `jupyter-book build -W -n`, serves it on 127.0.0.1 and opens
every page in headless Debian chromium (driven by playwright, never its own browser download).
Each page must load without console errors, show every image with alt text that says what it
shows (not the file name docutils puts there when none is given), and request nothing from any
host but the local server. Every link into the glossary must land on one of its terms, and
exercise solutions, where a page has any, must be collapsed on load and open on a click. The
repository itself is left untouched.
"""

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing (Debian package 'chromium'; "
                       "`make test` installs it when run as root with apt-get)"),
]


@pytest.fixture(scope="module")
def site(smoke_site):
    """The smoke build of the book (tests/conftest.py): path of _build/html."""
    return smoke_site


@pytest.fixture(scope="module")
def server(site):
    """Base URL of an HTTP server for the site on 127.0.0.1 (a free port)."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site (not the theme's templates under _static)."""
    skip = ("_static", "_sources", "_images")
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.relative_to(site).parts[0] not in skip)


def record_console_error(errors: list, msg) -> None:
    # a failed load is reported with its URL by record_failed_response; the console text has none
    if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
        errors.append(msg.text)


def record_failed_response(errors: list, response) -> None:
    # the browser asks every site for /favicon.ico by itself; the book links none
    if response.status >= 400 and urlparse(response.url).path != "/favicon.ico":
        errors.append(f"HTTP {response.status} for {response.url}")


def open_page(browser, url: str) -> dict:
    """Load `url`; return its console errors, off-host requests and images (src, naturalWidth)."""
    page = browser.new_page()
    errors, off_host = [], []
    page.on("console", functools.partial(record_console_error, errors))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", functools.partial(record_failed_response, errors))

    def check_request(request):
        parsed = urlparse(request.url)
        if parsed.scheme not in ("data", "blob", "about") and parsed.hostname not in LOCAL_HOSTS:
            off_host.append(request.url)

    page.on("request", check_request)
    try:
        # networkidle: index.html redirects (meta refresh) to the root page, which must finish loading
        page.goto(url, wait_until="networkidle")
        # load lazy images too, then let late requests (fonts, MathJax) happen before judging
        page.evaluate("""() => Promise.all([...document.images].map(img => {
            img.loading = 'eager'; return img.decode().catch(() => null); }))""")
        page.wait_for_load_state("networkidle")
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.currentSrc || i.src, i.naturalWidth])")
        alts = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.getAttribute('alt')])")
        links = page.eval_on_selector_all("a.reference", "links => links.map(a => a.href)")
        solutions = page.locator("div.solution").count()
        text = page.inner_text("body")
    finally:
        page.close()
    return {"errors": errors, "off_host": off_host, "images": images, "alts": alts, "links": links, "solutions": solutions,
            "text": text}


@pytest.fixture(scope="module")
def visited(site, server, browser) -> dict:
    """page (relative path) -> what :func:`open_page` read from it, for every page of the site."""
    return {rel: open_page(browser, f"{server}/{rel}") for rel in site_pages(site)}


def missing_alt_text(src: str | None, alt: str | None) -> bool:
    """True when an image has no alt text of its own: none, blank, or the image's file name
    (docutils' fallback when a figure is given no alt)."""
    alt = (alt or "").strip()
    return not alt or Path(alt).name == Path(src or "").name or alt.lower().endswith((".png", ".svg", ".jpg", ".jpeg", ".gif"))


def test_every_page_loads_offline_with_all_images(visited):
    assert "index.html" in visited and "executed/testbed.html" in visited, sorted(visited)
    problems = []
    for rel, result in visited.items():
        problems += [f"{rel}: console error: {e}" for e in result["errors"]]
        problems += [f"{rel}: request off the local server: {u}" for u in result["off_host"]]
        problems += [f"{rel}: image not shown: {src}" for src, width in result["images"] if width == 0]
    assert not problems, "\n".join(problems)


def test_every_image_has_alt_text(visited):
    missing = [f"{rel}: {src} (alt={alt!r})" for rel, result in visited.items()
               for src, alt in result["alts"] if missing_alt_text(src, alt)]
    assert not missing, f"{len(missing)} images without alt text saying what they show:\n" + "\n".join(missing)


def test_glossary_links_land_on_its_terms(site, server, browser, visited):
    glossary = next((rel for rel in visited if rel.endswith("glossary.html")), None)
    if glossary is None:
        pytest.skip("the site has no glossary page")
    glossary_url = f"{server}/{glossary}"
    page = browser.new_page()
    try:
        page.goto(glossary_url, wait_until="networkidle")
        terms = set(page.eval_on_selector_all("dl.glossary dt[id]", "dts => dts.map(dt => dt.id)"))
    finally:
        page.close()
    assert terms, f"{glossary} defines no terms"
    links = [(rel, href) for rel, result in visited.items() for href in result["links"]
             if href.split("#")[0] == glossary_url]
    assert any(rel != glossary for rel, _ in links), "no page links a term of the glossary"
    fragments = [(rel, href, href.partition("#")[2]) for rel, href in links]
    broken = [f"{rel}: {href}" for rel, href, fragment in fragments if fragment and fragment not in terms]
    assert not broken, "glossary links to no term:\n" + "\n".join(broken)


def test_exercise_solutions_are_collapsed_until_clicked(server, browser, visited):
    pages = [rel for rel, result in visited.items() if result["solutions"]]
    if not pages:
        pytest.skip("no page of the site has an exercise solution yet")
    problems = []
    for rel in pages:
        page = browser.new_page()
        try:
            page.goto(f"{server}/{rel}", wait_until="networkidle")
            solutions = page.locator("div.solution")
            for i in range(solutions.count()):
                solution = solutions.nth(i)
                content = solution.locator("section").first
                name = f"{rel}: solution {i + 1}"
                if content.is_visible():
                    problems.append(f"{name} is open on load (give it `:class: dropdown`)")
                    continue
                # the toggle button sphinx-togglebutton adds to the title (the rest of the title is
                # the link to the exercise)
                solution.locator("button.toggle-button").first.click()
                try:
                    content.wait_for(state="visible", timeout=5000)
                except Exception:
                    problems.append(f"{name} does not open on a click of its toggle button")
        finally:
            page.close()
    assert not problems, "\n".join(problems)


def test_notebook_page_shows_its_figures_and_numbers(site, server, browser):
    result = open_page(browser, f"{server}/executed/testbed.html")
    assert len(result["images"]) >= 3 and all(width > 0 for _, width in result["images"])
    assert re.search(r"\b\d+ of the training images are planted", result["text"].replace("\n", " "))


def test_reproduction_page_shows_numbers(site, server, browser):
    if not (site / "executed" / "reproduction.html").is_file():
        pytest.skip("no executed/reproduction page in _toc.yml yet")
    result = open_page(browser, f"{server}/executed/reproduction.html")
    text = result["text"]
    assert re.search(r"\d+\.\d+", text), "the reproduction page shows no measured numbers"
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), "the reproduction page shows NaN"
