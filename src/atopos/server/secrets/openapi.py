"""The OpenAPI 3.1 description of the API, served at /openapi.json.

Written out by hand around the msgspec schemas, so the document states exactly what the
server enforces (schemathesis checks it against the running server in the tests).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from atopos import __version__
from atopos.server.errors import ErrorResponse
from atopos.server.secrets.openapi_requests import REQUEST_SCHEMAS, request_paths
from atopos.server.secrets.receipts import MAX_RECEIPT_WAIT_SECONDS
from atopos.server.secrets.schemas import (
    ChallengeResponse,
    CreateResponse,
    ReceiptsResponse,
    RevealRequest,
    StampRefusedResponse,
    StatusResponse,
    TicketRequest,
    TicketResponse,
)

__all__ = ["openapi_document"]

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Secret id: 16 bytes, unpadded base64url.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
}
_BEARER: list[dict[str, list[str]]] = [{"manageToken": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _json_response(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        403: (
            "Refused: bad, used or expired ticket or challenge, wrong proof of work, a stamp "
            "already used or made for another secret, missing or wrong access proof "
            "(wrong_key: wrong key or passphrase), missing or wrong device proof, wrong token."
        ),
        404: "Gone: unknown, expired, already viewed or deleted.",
        413: (
            "Body too large; for the ticket step with reveal and the reveal step also "
            "answer_too_large (with size): the envelope is over max_bytes, nothing spent."
        ),
        409: "Conflict: the request is being filled or was filled.",
        415: "Wrong content type.",
        422: (
            "Input does not match the schema; invalid_stamp: a stamp not in its one "
            "canonical spelling."
        ),
        429: "Rate-limited; see Retry-After.",
        503: "Storage unavailable; see Retry-After.",
        507: "Storage full.",
    }
    return {str(status): _json_response(text[status], "ErrorResponse") for status in statuses}


@functools.cache
def openapi_document(max_envelope_bytes: int, max_ttl: int, max_views: int) -> bytes:
    _, components = msgspec.json.schema_components(
        [
            ChallengeResponse,
            CreateResponse,
            ErrorResponse,
            RevealRequest,
            StampRefusedResponse,
            StatusResponse,
            ReceiptsResponse,
            TicketRequest,
            TicketResponse,
            *REQUEST_SCHEMAS,
        ],
        ref_template="#/components/schemas/{name}",
    )
    envelope = {
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary", "maxLength": max_envelope_bytes}
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Atopos",
            "version": __version__,
            "description": "One-time secrets: the server stores ciphertext only.",
        },
        "paths": {
            "/api/v1/secrets": {
                "post": {
                    "operationId": "createSecret",
                    "summary": "Store an envelope (encrypted on the client).",
                    "parameters": [
                        {
                            "name": "expires_in",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 60, "maximum": max_ttl},
                        },
                        {
                            "name": "views",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": max_views},
                        },
                        {"name": "kind", "in": "query", "schema": {"enum": ["text", "file"]}},
                        {
                            "name": "device_key",
                            "in": "query",
                            "description": (
                                "Bind the secret to a device: its Ed25519 public key, 32 bytes "
                                "as unpadded base64url. The ticket step then requires "
                                "device_proof. A key that is not a valid Ed25519 point is 422."
                            ),
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
                        },
                        {
                            "name": "access_key",
                            "in": "query",
                            "required": True,
                            "description": (
                                "The Ed25519 access key (32 bytes, unpadded base64url) derived "
                                "from the link key and passphrase (docs/protocol/access.md); "
                                "the ticket step then requires access_proof. Missing or not a "
                                "valid Ed25519 point is 422."
                            ),
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
                        },
                    ],
                    "requestBody": {"required": True, "content": envelope},
                    "responses": {
                        "201": _json_response("Stored durably.", "CreateResponse"),
                        **_errors(413, 415, 422, 429, 503, 507),
                    },
                }
            },
            "/api/v1/secrets/{id}/challenge": {
                "post": {
                    "operationId": "getChallenge",
                    "summary": "A signed proof-of-work challenge bound to this secret.",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json_response("Challenge.", "ChallengeResponse"),
                        **_errors(404, 429, 503),
                    },
                }
            },
            "/api/v1/secrets/{id}/ticket": {
                "post": {
                    "operationId": "getTicket",
                    "summary": "Trade a solved challenge for a single-use ticket; with "
                    '"reveal": true, redeem it at once and answer with the envelope. With a '
                    "stamp instead of a challenge (s1.{id}.{t}.{salt}, reveal and access_proof "
                    "required, no device_proof): the envelope in one request, or a fresh "
                    "challenge with stamp_refused (access, clock or bits) when the server "
                    "cannot take the stamp; nothing is spent then.",
                    "parameters": [_ID],
                    "requestBody": _json_body("TicketRequest"),
                    "responses": {
                        "200": {
                            "description": (
                                "The ticket (JSON); with reveal the envelope; for a stamp the "
                                "envelope or a challenge with stamp_refused (JSON)."
                            ),
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            _ref("TicketResponse"),
                                            _ref("StampRefusedResponse"),
                                        ]
                                    }
                                },
                                **envelope,
                            },
                        },
                        **_errors(403, 404, 413, 422, 429, 503),
                    },
                }
            },
            "/api/v1/secrets/{id}/reveal": {
                "post": {
                    "operationId": "revealSecret",
                    "summary": "Redeem a ticket: the envelope, once per view.",
                    "parameters": [_ID],
                    "requestBody": _json_body("RevealRequest"),
                    "responses": {
                        "200": {"description": "The envelope.", "content": envelope},
                        **_errors(403, 404, 413, 422, 429, 503),
                    },
                }
            },
            "/api/v1/secrets/{id}/status": {
                "get": {
                    "operationId": "secretStatus",
                    "summary": "Views left and expiry, for the holder of the manage token.",
                    "parameters": [_ID],
                    "security": _BEARER,
                    "responses": {
                        "200": _json_response("Status.", "StatusResponse"),
                        **_errors(403, 404, 429, 503),
                    },
                }
            },
            "/api/v1/secrets/{id}/receipts": {
                "get": {
                    "operationId": "secretReceipts",
                    "summary": "The minute each view was spent, also after the last one; with "
                    "wait, a long poll until more than `seen` views were spent.",
                    "parameters": [
                        _ID,
                        {
                            "name": "seen",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 10_000},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": MAX_RECEIPT_WAIT_SECONDS,
                            },
                        },
                    ],
                    "security": _BEARER,
                    "responses": {
                        "200": _json_response("Receipts.", "ReceiptsResponse"),
                        **_errors(403, 404, 422, 429, 503),
                    },
                }
            },
            "/api/v1/secrets/{id}": {
                "delete": {
                    "operationId": "deleteSecret",
                    "summary": "Burn the secret now.",
                    "parameters": [_ID],
                    "security": _BEARER,
                    "responses": {
                        "204": {"description": "Burned."},
                        **_errors(403, 404, 429, 503, 507),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and storage health.",
                    "responses": {
                        "200": {"description": "Serving."},
                        "503": {"description": "Storage down."},
                    },
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "manageToken": {"type": "http", "scheme": "bearer"},
                "fillToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
    document["paths"].update(request_paths(envelope, _json_body, _json_response, _errors))
    return msgspec.json.encode(document)
