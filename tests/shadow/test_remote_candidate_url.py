"""Which URLs name a remote shadow candidate: a model's Open Inference Protocol base URL only."""

from __future__ import annotations

import pytest

from keel.errors import KeelError
from keel.settings import ShadowSettings
from keel.shadow.candidates import RemoteCandidate


@pytest.mark.parametrize(
    ("url", "model", "version"),
    [
        ("http://10.0.0.7:8080/v2/models/churn", "churn", None),
        ("https://models.internal/v2/models/churn/versions/3/", "churn", "3"),
    ],
)
def test_a_model_url_names_the_model_and_any_pinned_version(
    url: str, model: str, version: str | None
) -> None:
    candidate = RemoteCandidate(url, ShadowSettings())
    assert candidate.model_name == model
    # A pinned version names the candidate's records from the start; else its URL does.
    assert candidate.version == (version or url.rstrip("/"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/v2/models/churn",
        "http://host/v1/models/churn",
        "http://host/v2/models/churn/infer",
        "http://host/v2/models/churn/versions/",
        "http://host/v2/models//versions/3",
        "http://host/models/churn",
    ],
)
def test_anything_else_is_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(KeelError, match=r"must look like http://HOST:PORT/v2/models/NAME"):
        RemoteCandidate(url, ShadowSettings())
