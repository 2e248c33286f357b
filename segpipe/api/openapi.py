"""The OpenAPI document, made to tell the truth about what every route can answer.

FastAPI documents its own validation error shape (``HTTPValidationError``) for 422, but every error
of this API is ``ErrorOut`` (`segpipe.api.errors`), and some statuses come from layers a route does
not see: authentication (401/403 on every route but ``/health``), the body-size limit (413 on every
route that takes a body), the NUL-refusing middleware and database value errors (422 on every route
with parameters). Patching the generated document in one place keeps each route's own ``responses``
about what is specific to it. ``tests/api/test_fuzz.py`` checks the result against the running app.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from segpipe.api.schemas import ErrorOut

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_PUBLIC_PATHS = frozenset({"/health"})
_COMMON = {
    401: "no or unknown token (WWW-Authenticate: Bearer)",
    403: "the token's role is too low for this route",
    422: "invalid request: the message names the parameter or key (also a NUL character or a number "
    "too large for the database)",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a generator that declares the statuses every layer can answer."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}"))
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                _patch_operation(path, method, operation)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


# The NUL guard refuses any URL holding %00 (422): the document says so on every string parameter, so a
# client (or a fuzzer) that follows the document never sends one expecting an answer.
NO_NUL = r"^[^\x00]*$"


def _no_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
        schema["pattern"] = NO_NUL
    for branch in schema.get("anyOf", []):
        _no_nul(branch)


def _patch_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") in ("path", "query"):
            _no_nul(parameter.get("schema", {}))
    responses = operation.setdefault("responses", {})
    wanted: dict[int, str] = {}
    if path not in _PUBLIC_PATHS:
        wanted.update({401: _COMMON[401], 403: _COMMON[403]})
    wanted[422] = _COMMON[422]  # the NUL guard answers 422 on any URL, parameters or not
    if "requestBody" in operation:
        wanted[400] = "a body that does not parse (not JSON / multipart, not UTF-8)"
        wanted[413] = "request body larger than the configured limit"
    if "{" in path:
        wanted[404] = "no such resource (named in the message)"
    for status, description in wanted.items():
        key = str(status)
        if key not in responses:
            responses[key] = _error(description)
        else:  # keep the route's description, make the body the real one
            responses[key]["content"] = {"application/json": {"schema": _ERROR_REF}}
