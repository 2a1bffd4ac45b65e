"""A hostile request, and the rules every answer to one must follow.

Every answer is a 4xx whose JSON body says what was wrong (or, for a request that
turned out valid, a well-formed 200); never a 5xx, never a hang, never a stack trace.
"""

from __future__ import annotations

import http.client
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from figures import Figures

SECTION = "hostile_requests"
# Longer than any refusal takes on a loaded two-core machine; reaching it is a hang.
CLIENT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class HostileRequest:
    """One request built to break a rule, and the words a useful refusal must contain."""

    case: str
    path: str
    body: bytes = b""
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    # The error (with its details) must mention one of these, case-insensitively.
    mentions: tuple[str, ...] = ()
    # Some mutations are valid by chance (-0.0, a big but finite number): a 200 then
    # has to be a real answer rather than a refusal.
    may_succeed: bool = False
    statuses: Collection[int] = range(400, 500)
    # A 422 must list this field among its per-field details.
    field: str | None = None
    # Sent byte for byte, without the client normalising '..' out of the path.
    raw: bool = False


def send(client: httpx.Client, request: HostileRequest, figures: Figures) -> httpx.Response:
    """Send ``request``, count its answer under its case, and check the answer's rules."""
    headers = {name: value.encode("latin-1") for name, value in request.headers.items()}
    try:
        if request.raw:
            response = _send_raw(str(client.base_url), request)
        else:
            response = client.request(
                request.method, request.path, content=request.body, headers=headers
            )
    except (httpx.TimeoutException, TimeoutError):
        figures.add(SECTION, request.case, tried=1, hangs=1)
        raise AssertionError(f"no answer in {CLIENT_TIMEOUT_S} s to {request}") from None
    status = response.status_code
    figures.add(
        SECTION,
        request.case,
        tried=1,
        refused=int(400 <= status < 500),
        accepted=int(200 <= status < 300),
        server_errors=int(status >= 500),
    )
    check_answer(response, request)
    return response


def _send_raw(base_url: str, request: HostileRequest) -> httpx.Response:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=CLIENT_TIMEOUT_S)
    try:
        connection.request(
            request.method, request.path, body=request.body, headers=dict(request.headers)
        )
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()


def check_answer(response: httpx.Response, request: HostileRequest) -> None:
    """A useful 4xx, or (where the mutation may be valid) a real 200 answer."""
    status = response.status_code
    shown = (
        f"{request.case}: {request.method} {request.path[:200]} -> {status} {response.text!r:.600}"
    )
    assert "Traceback" not in response.text, shown
    if status == 200 and request.may_succeed:
        _check_success(response, request, shown)
        return
    assert status in request.statuses, shown
    assert response.headers.get("content-type", "").startswith("application/json"), shown
    body = response.json()
    assert isinstance(body, dict), shown
    assert isinstance(body.get("error"), str), shown
    assert body["error"].strip(), shown
    details = _details(body)
    if status == 422 and request.field is not None:
        fields = [detail["field"] for detail in details]
        assert request.field in fields, f"the details do not name {request.field!r}: {shown}"
    said = " ".join([body["error"], *(str(v) for d in details for v in d.values())]).lower()
    assert any(word.lower() in said for word in request.mentions), (
        f"the refusal names none of {request.mentions}: {shown}"
    )


def _details(body: dict[str, object]) -> list[dict[str, object]]:
    """The per-field details of a 422: each names its field, rule and problem."""
    details = body.get("details", [])
    assert isinstance(details, list), body
    for detail in details:
        assert isinstance(detail, dict), details
        assert {"field", "rule", "message"} <= set(detail), details
    return details


def _check_success(response: httpx.Response, request: HostileRequest, shown: str) -> None:
    if request.path.startswith("/v1/"):
        assert isinstance(response.json()["predictions"], list), shown
        return
    if response.headers.get("content-type") == "application/octet-stream":
        assert int(response.headers["inference-header-content-length"]) > 0, shown
        return
    outputs = response.json()["outputs"]
    assert outputs, shown
    assert all("data" in output or "parameters" in output for output in outputs), shown
