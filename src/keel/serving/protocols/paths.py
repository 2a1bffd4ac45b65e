"""The inference paths, ``/{api}/models/{name}[/versions/{v}]/{action}``, taken apart.

Kept apart from ``inference_front`` (which serves them) so that code building or
checking such paths, a remote shadow candidate's URL for one, needs nothing else.
"""

from __future__ import annotations

# (API, last path segment) -> endpoint, for /{api}/models/{name}[/versions/{v}]/{action}.
ENDPOINTS: dict[tuple[str, str], str] = {("v1", "predict"): "records", ("v2", "infer"): "v2_infer"}


Route = tuple[str, str, str | None]
"""The endpoint, model name and path version (if any) of an inference path."""


def match(path: str) -> Route | None:
    """The endpoint and path parameters of an inference path, or None for any other path."""
    parts = path.split("/")
    if len(parts) == 5:
        root, api, models, name, action = parts
        version = None
    elif len(parts) == 7 and parts[4] == "versions":
        root, api, models, name, _, version, action = parts
        if not version:
            return None
    else:
        return None
    endpoint = ENDPOINTS.get((api, action))
    if endpoint is None or root or models != "models" or not name:
        return None
    return endpoint, name, version


_API_OF = {endpoint: key for key, endpoint in ENDPOINTS.items()}


def template(route: Route) -> str:
    """The route's path with its parameters named (``/v2/models/{name}/infer``): what a
    metric or span may carry, where the path itself would make a series per model."""
    endpoint, _, version = route
    api, action = _API_OF[endpoint]
    middle = "/versions/{version}" if version is not None else ""
    return f"/{api}/models/{{name}}{middle}/{action}"
