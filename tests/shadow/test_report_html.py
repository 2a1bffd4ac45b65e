"""The HTML report's markup: self-contained, and log strings shown as text, never as markup."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from keel.logstore.records import CandidateStatus
from keel.settings import PromotionCriteria
from keel.shadow.promotion import judge
from keel.shadow.report import build_report
from keel.shadow.report_html import render_html
from shadow.shadow_traffic import (
    HOSTILE,
    HOSTILE_LABELS,
    ModelPair,
    run_traffic,
    with_hostile_strings,
)

# Every element the report may contain; anything else came from somewhere it should not.
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "p",
    "small",
    "code",
    "table",
    "tr",
    "th",
    "td",
    "div",
    "details",
    "summary",
    "svg",
    "rect",
    "circle",
    "path",
    "text",
}


class Markup(HTMLParser):
    """Every tag, attribute and piece of text of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(page: str) -> Markup:
    markup = Markup()
    markup.feed(page)
    markup.close()
    return markup


@pytest.fixture(scope="module")
def hostile_page(cancer: ModelPair) -> str:
    records = with_hostile_strings(run_traffic(cancer, 60))
    report = build_report(records, top=8)
    return render_html(report, judge(report, PromotionCriteria()))


def test_log_strings_are_text_not_markup(hostile_page: str) -> None:
    markup = _parsed(hostile_page)
    assert markup.tags <= ALLOWED_TAGS, markup.tags - ALLOWED_TAGS
    assert not [name for name, _ in markup.attributes if name.startswith("on")]
    text = "".join(markup.text)
    assert f"{HOSTILE}#" in text  # the request ids, shown as they are
    assert f"{HOSTILE} " in text  # the string input
    assert HOSTILE_LABELS[0] in text  # a label value, in the tables and the charts


def test_the_page_names_no_external_resource(hostile_page: str) -> None:
    markup = _parsed(hostile_page)
    assert not {"src", "href", "xmlns", "srcset", "action"} & {n for n, _ in markup.attributes}
    assert not [v for _, v in markup.attributes if "://" in v or "url(" in v]
    assert "@import" not in hostile_page
    assert "url(" not in "".join(markup.text)  # not in the stylesheet either
    policy = dict(markup.attributes)["content"]
    assert "default-src 'none'" in policy


def test_every_output_gets_its_charts(cancer: ModelPair, digits: ModelPair) -> None:
    cancer_page = render_html(build_report(run_traffic(cancer, 40), outputs=cancer.outputs))
    # Label: bars and a confusion heat map; probabilities: histogram and scatter; latency.
    assert cancer_page.count("<svg") == 5
    assert "probabilities[benign]" in cancer_page
    digits_page = render_html(build_report(run_traffic(digits, 40), outputs=digits.outputs))
    assert "probabilities[primary&#x27;s class]" in digits_page


def test_nothing_to_compare_is_said_not_drawn(cancer: ModelPair) -> None:
    page = render_html(
        build_report(run_traffic(cancer, 10, status_of=lambda _: CandidateStatus.TIMEOUT))
    )
    assert "No request was answered by the candidate" in page
    assert page.count("<svg") == 1  # the primary's latency alone
