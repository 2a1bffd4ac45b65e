"""The HTML report opened in a real browser (Debian's Chromium, headless): offline, drawn, inert.

Chromium comes from the system (scripts/install-system-deps), never from a
download: a missing browser fails this test, it is not skipped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from keel.settings import PromotionCriteria
from keel.shadow.promotion import judge
from keel.shadow.report import build_report
from keel.shadow.report_html import render_html
from shadow.shadow_traffic import HOSTILE, ModelPair, run_traffic, with_hostile_strings

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: run scripts/install-system-deps"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def pages(
    cancer: ModelPair,
    digits: ModelPair,
    digit_scores: ModelPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """Report files of a binary classifier (with hostile strings), ten digits, and scores alone."""
    folder = tmp_path_factory.mktemp("html")
    hostile = with_hostile_strings(run_traffic(cancer, 80))
    reports = {
        "cancer": build_report(hostile, top=10),
        "digits": build_report(run_traffic(digits, 80), outputs=digits.outputs),
        "scores": build_report(run_traffic(digit_scores, 80), score_tolerance=0.5),
    }
    files = {}
    for name, report in reports.items():
        path = folder / f"{name}.html"
        path.write_text(render_html(report, judge(report, PromotionCriteria())), encoding="utf-8")
        files[name] = path
    return files


class OfflinePage:
    """A browser page that aborts, and remembers, every request not for a file: or data: URL."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page: Page = self.context.new_page()
        self.blocked: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def offline(browser: Browser) -> Iterator[OfflinePage]:
    page = OfflinePage(browser)
    yield page
    page.close()


@pytest.mark.parametrize(("name", "charts"), [("cancer", 5), ("digits", 5), ("scores", 3)])
def test_every_chart_is_drawn_and_nothing_is_fetched(
    offline: OfflinePage, pages: dict[str, Path], name: str, charts: int
) -> None:
    offline.page.goto(pages[name].as_uri(), wait_until="load")
    # Screenshots are decoded on a page of their own: the report's policy allows no script.
    scratch = offline.context.new_page()
    svgs = offline.page.locator("svg")
    assert svgs.count() == charts
    for i in range(charts):
        svg = svgs.nth(i)
        box = svg.bounding_box()
        assert box is not None, f"chart {i} is not laid out"
        assert box["width"] > 0, f"chart {i} has no width"
        assert box["height"] > 0, f"chart {i} has no height"
        assert svg.locator("rect, circle, path").count() > 0, f"chart {i} draws no marks"
        colours = _colours(scratch, svg.screenshot())
        assert colours > 2, f"chart {i} of {name} is a flat image ({colours} colours)"
    assert offline.blocked == []


def test_hostile_log_strings_are_shown_and_never_run(
    offline: OfflinePage, pages: dict[str, Path]
) -> None:
    offline.page.goto(pages["cancer"].as_uri(), wait_until="load")
    assert offline.page.evaluate("window.__injected") is None
    assert offline.page.locator("script, img, iframe, object, embed").count() == 0
    first_request = offline.page.locator("table").last.locator("tr").nth(1).locator("td").first
    assert first_request.inner_text().startswith(HOSTILE)
    assert offline.blocked == []


def test_the_guard_sees_a_page_that_fetches(offline: OfflinePage, tmp_path: Path) -> None:
    """The network check above is not vacuous: a page with a remote image is caught."""
    page = tmp_path / "fetching.html"
    page.write_text('<img src="http://192.0.2.1/pixel.png"><p>hello</p>', encoding="utf-8")
    offline.page.goto(page.as_uri(), wait_until="load")
    assert offline.blocked == ["http://192.0.2.1/pixel.png"]


COUNT_COLOURS = """async (url) => {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const bytes = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const seen = new Set();
    for (let i = 0; i < bytes.length; i += 4) {
        seen.add(bytes[i] * 16777216 + bytes[i + 1] * 65536 + bytes[i + 2] * 256 + bytes[i + 3]);
    }
    return seen.size;
}"""


def _colours(scratch: Page, png: bytes) -> int:
    """How many distinct colours a PNG screenshot holds, decoded by the browser itself."""
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    count: int = scratch.evaluate(COUNT_COLOURS, url)
    return count
