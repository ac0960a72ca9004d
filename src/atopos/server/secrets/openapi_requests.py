"""The OpenAPI description of secret requests (docs/protocol/requests.md), merged into
/openapi.json by `openapi.py`."""

from __future__ import annotations

from typing import Any

from atopos.server.secrets.request_schemas import (
    NewRequestBody,
    RequestCreated,
    RequestFilled,
    RequestStatus,
)

__all__ = ["REQUEST_SCHEMAS", "request_paths"]

REQUEST_SCHEMAS = (NewRequestBody, RequestCreated, RequestFilled, RequestStatus)
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Request id: 16 bytes, unpadded base64url.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
}


def request_paths(
    envelope: dict[str, Any], json_body: Any, json_response: Any, errors: Any
) -> dict[str, Any]:
    """The four request routes, built with `openapi.py`'s helpers."""
    return {
        "/api/v1/requests": {
            "post": {
                "operationId": "openRequest",
                "summary": "Open a request for a secret, bound to the requester's device.",
                "requestBody": json_body("NewRequestBody"),
                "responses": {
                    "201": json_response("Opened.", "RequestCreated"),
                    **errors(413, 422, 429, 503, 507),
                },
            }
        },
        "/api/v1/requests/{id}": {
            "get": {
                "operationId": "requestStatus",
                "summary": "Open, filling or filled, for the holder of the request token.",
                "parameters": [_ID],
                "security": [{"manageToken": []}],
                "responses": {
                    "200": json_response("Status.", "RequestStatus"),
                    **errors(403, 404, 429, 503),
                },
            },
            "delete": {
                "operationId": "cancelRequest",
                "summary": "Close the request unfilled, while no fill holds it.",
                "parameters": [_ID],
                "security": [{"manageToken": []}],
                "responses": {
                    "204": {"description": "Cancelled: the request is forgotten."},
                    **errors(403, 404, 409, 422, 429, 503),
                },
            },
        },
        "/api/v1/requests/{id}/fill": {
            "post": {
                "operationId": "fillRequest",
                "summary": "Fill the request, once, with an envelope sealed to its device.",
                "parameters": [
                    _ID,
                    {"name": "kind", "in": "query", "schema": {"enum": ["text", "file"]}},
                ],
                "security": [{"fillToken": []}],
                "requestBody": {"required": True, "content": envelope},
                "responses": {
                    "201": json_response("Stored durably.", "RequestFilled"),
                    **errors(403, 404, 413, 422, 429, 503, 507),
                },
            }
        },
    }
