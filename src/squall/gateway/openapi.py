"""The app's contract: an OpenAPI 3.1 document generated from its routes, served at
`/openapi.json`, and a docs page at `/docs` (self-contained HTML, no CDN).

Request models (JSON Schema 2020-12, which OpenAPI 3.1 uses as is) become request
bodies; their `$defs` move to `components/schemas`. Every operation lists the gateway's
JSON errors it can answer with, in one shared `Error` schema. Both are served only when
no route of the app claims the path.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
DOC_PATHS = ("/openapi.json", "/docs")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["message", "code", "requestId"],
    "properties": {
        "message": {"type": "string"}, "code": {"type": "string"},
        "requestId": {"type": "string"}, "errorMessage": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = "#/components/schemas/" + v[len("#/$defs/"):]
            else:
                out[k] = _rewrite_refs(v)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def openapi_document(manifest: dict[str, Any], *, server_url: str | None = None) -> dict[str, Any]:
    sec = manifest.get("security") or {}
    route_sec = sec.get("routes") or {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    schemes: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for f in manifest["functions"]:
        if f["kind"] != "http" and not f.get("webhook"):
            continue
        spec = route_sec.get(f["name"], {})
        for method, template in f["routes"]:
            path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", template)
            params = [{"name": m.group(1), "in": "path", "required": True,
                       "schema": {"type": "string"}} for m in _PARAM.finditer(template)]
            op: dict[str, Any] = {
                "operationId": f["name"] if len(f["routes"]) == 1
                else f"{f['name']}_{method.lower()}_{len(paths)}",
                "summary": spec.get("summary") or f.get("description") or f["name"],
                "responses": {
                    "200": {"description": "The function's answer"},
                    "400": _error("Malformed or invalid request"),
                    "404": _error("No such route"),
                    "413": _error("Body too large"),
                    "414": _error("URL too long"),
                    "431": _error("Headers too large"),
                    "429": _error("Throttled (see Retry-After)"),
                    "502": _error("The function failed"),
                    "503": _error("Unavailable"),
                    "504": _error("The function timed out"),
                },
            }
            if spec.get("tags"):
                op["tags"] = spec["tags"]
            if params:
                op["parameters"] = params
            model = spec.get("model")
            if model is not None:
                model = dict(model)
                for name, schema in (model.pop("$defs", None) or {}).items():
                    schemas[name] = _rewrite_refs(schema)
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": _rewrite_refs(model)}}}
            auth = spec.get("auth")
            if auth is not None:
                name = {"api_key": "apiKey", "jwt": "bearerJwt"}.get(auth["type"],
                                                                     f"authorizer_{auth.get('function')}")
                if auth["type"] == "api_key":
                    schemes[name] = {"type": "apiKey", "in": "header", "name": "x-api-key"}
                elif auth["type"] == "jwt":
                    schemes[name] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                else:
                    where, field = auth["identity"]
                    schemes[name] = {"type": "apiKey", "in": where, "name": field,
                                     "description": f"checked by function {auth['function']}"}
                op["security"] = [{name: list(spec.get("scopes") or [])}]
                op["responses"]["401"] = _error("Missing or invalid credentials")
                op["responses"]["403"] = _error("Credentials refused")
            methods = _METHODS if method == "ANY" else (method.lower(),)
            for m in methods:
                paths.setdefault(path, {})[m] = op if len(methods) == 1 else {
                    **op, "operationId": f"{op['operationId']}_{m}"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": manifest["app"], "version": str(manifest.get("version", "1.0.0"))},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if schemes:
        doc["components"]["securitySchemes"] = schemes
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def docs_page(doc: dict[str, Any]) -> str:
    """A plain HTML page listing every operation and its request body schema."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = (f"<pre>{html.escape(json.dumps(body['schema'], indent=2))}</pre>"
                      if body else "")
            auth = ", ".join(k for s in op.get("security", []) for k in s) or "none"
            rows.append(f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                        f"<p>{html.escape(op['summary'])} — auth: {html.escape(auth)}</p>"
                        f"{schema}</section>")
    title = html.escape(doc["info"]["title"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title} API</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "pre{background:#f4f4f4;padding:.5em}</style></head><body>"
            f"<h1>{title} API</h1><p>Machine-readable: <a href='openapi.json'>openapi.json"
            f"</a> (OpenAPI 3.1)</p>{''.join(rows)}</body></html>")
