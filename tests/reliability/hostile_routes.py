"""Hypothesis strategies for hostile routing: unknown models and versions, path tricks in names,
and headers that pick a version or set a deadline."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import strategies as st
from refusals import HostileRequest
from served_models import ServedModel, json_body

# Written into the path exactly as they stand (sent without normalisation).
PATH_TRICKS = [
    "..",
    ".",
    "%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%2F",
    "%00",
    "a%00b",
    "%ff%fe",
    "%c0%ae%c0%ae",
    "%252e%252e",
    "..%5c..%5c",
    "~root",
    "*",
    "latest",
    "production%00",
    "production%2F..",
    "a" * 300,
]
VERSION_TRICKS = ["../../etc", "production/..", "%00", "latest", "a/b/c", "*", "..", "\\.."]
# What an HTTP header value may hold: no control characters, no space at either end.
LATIN1_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(lambda text: text.strip(" "))
DEADLINE_JUNK = ["nan", "-inf", "0", "-0", "-1", "1e-400", "0x10", "", "ms", "10ms"]


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(PATH_TRICKS), st.text(max_size=20).map(lambda s: quote(s, safe=""))
    )


@st.composite
def unknown_models_and_path_tricks(draw: st.DrawFn, models: list[ServedModel]) -> HostileRequest:
    model = draw(st.sampled_from(models))
    trick_in_name = draw(st.booleans())
    name = draw(_segment()) if trick_in_name else model.name
    version = None if trick_in_name and draw(st.booleans()) else draw(_segment())
    base = f"/{{api}}/models/{name}" + ("" if version is None else f"/versions/{version}")
    endpoint = draw(st.sampled_from(["predict", "infer", "metadata", "ready", "drift"]))
    if endpoint == "predict":
        method, path, body = (
            "POST",
            base.format(api="v1") + "/predict",
            json_body({"instances": [model.record()]}),
        )
    elif endpoint == "infer":
        method, path, body = (
            "POST",
            base.format(api="v2") + "/infer",
            json_body({"inputs": [model.tensor(1)]}),
        )
    else:
        suffix = "" if endpoint == "metadata" else f"/{endpoint}"
        method, path, body = "GET", base.format(api="v2") + suffix, b""
    return HostileRequest(
        case="routes: unknown models and versions, path tricks in names",
        path=path,
        body=body,
        method=method,
        # Paths no route matches (a slash or nothing where the name goes) are
        # answered "no such endpoint".
        mentions=("not served", "no served version", "no such endpoint"),
        # A version segment may be a real version's prefix or alias: then it is served.
        may_succeed=not trick_in_name or name == model.name,
        statuses=frozenset({404}),
        raw=True,
    )


@st.composite
def version_headers(draw: st.DrawFn, models: list[ServedModel]) -> HostileRequest:
    model = draw(st.sampled_from(models))
    selector = draw(st.one_of(st.sampled_from(VERSION_TRICKS), LATIN1_TEXT))
    infer = draw(st.booleans())
    return HostileRequest(
        case="headers: X-Keel-Model-Version names no version",
        path=model.infer_path if infer else model.predict_path,
        body=json_body({"inputs": [model.tensor(1)]} if infer else {"instances": [model.record()]}),
        headers={"X-Keel-Model-Version": selector},
        mentions=("no served version",),
        may_succeed=True,
        statuses=frozenset({404}),
    )


def _not_a_positive_number(text: str) -> bool:
    try:
        return not float(text) > 0
    except ValueError:
        return True


@st.composite
def deadline_headers(draw: st.DrawFn, models: list[ServedModel]) -> HostileRequest:
    model = draw(st.sampled_from(models))
    endless = draw(st.booleans())
    if endless:
        # Deadlines no clock reaches: the request is simply served.
        deadline = draw(st.sampled_from(["inf", "1e309", "1e18", "1e300"]))
    else:
        deadline = draw(
            st.one_of(st.sampled_from(DEADLINE_JUNK), LATIN1_TEXT.filter(_not_a_positive_number))
        )
    return HostileRequest(
        case="headers: X-Keel-Deadline-Ms that is no deadline",
        path=model.predict_path,
        body=json_body({"instances": [model.record()]}),
        headers={"X-Keel-Deadline-Ms": deadline},
        mentions=("x-keel-deadline-ms",),
        may_succeed=endless,
        statuses=frozenset({400}),
    )


def route_requests(models: list[ServedModel]) -> st.SearchStrategy[HostileRequest]:
    return st.one_of(
        unknown_models_and_path_tricks(models),
        version_headers(models),
        deadline_headers(models),
    )
