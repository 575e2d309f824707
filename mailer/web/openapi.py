"""The OpenAPI 3.1 document of the API under /api/v1 (served at /api/v1/openapi.json, without a key)."""

from __future__ import annotations

from typing import Any

from mailer.contacts.fields import CUSTOMER_COLUMNS, INTERACTION_COLUMNS

_ERRORS = {
    "description": "Refused; nothing was changed",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
}


def _reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _refusals(*codes: str) -> dict[str, Any]:
    return {code: _ERRORS for code in ("401", "403", *codes)}


def document() -> dict[str, Any]:
    text = {"type": ["string", "number", "boolean", "null"]}
    customer = {
        "type": "object",
        "description": "The CSV import's columns; any other key becomes an attribute. Only the keys given change.",
        "required": ["email"],
        "properties": {
            name: ({"type": "array", "items": {"type": "string"}} if name == "tags" else text)
            for name in CUSTOMER_COLUMNS
        },
        "additionalProperties": text,
    }
    interaction = {
        "type": "object",
        "required": ["external_id", "kind", "occurred_at", "reference"],
        "properties": {name: text for name in INTERACTION_COLUMNS},
    }
    external_id = {"name": "external_id", "in": "path", "required": True, "schema": {"type": "string"}}
    result = {"type": "object", "properties": {"external_id": {"type": "string"}, "result": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mailer", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a key from `mailer api-key create NAME`"}},
            "schemas": {
                "Customer": customer,
                "Interaction": interaction,
                "Errors": {"type": "object", "properties": {"errors": {"type": "array", "items": {
                    "type": "object", "required": ["field", "problem"],
                    "properties": {"field": {"type": "string"}, "problem": {"type": "string"},
                                   "item": {"type": "integer", "description": "position in an array, from 1"}},
                }}}},
            },
        },
        "paths": {
            "/customers/{external_id}": {
                "parameters": [external_id],
                "put": {
                    "summary": "Create or update a customer",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Customer"}}}},
                    "responses": {"201": _reply("Created", result), "200": _reply("Updated or unchanged", result),
                                  **_refusals("400", "413", "415", "422")},
                },
                "get": {
                    "summary": "What mailer holds: fields, opt-outs, the newest send-log rows, upcoming occasions",
                    "parameters": [{"name": "days", "in": "query", "required": False,
                                    "description": "how far ahead `upcoming` looks, in days (default 30)",
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}}],
                    "responses": {"200": _reply("The customer", {"type": "object"}), **_refusals("404", "422")},
                },
                "delete": {
                    "summary": "Erase the customer (as `mailer forget`)",
                    "responses": {"200": _reply("Erased, or already erased", result), **_refusals("404")},
                },
            },
            "/interactions": {
                "post": {
                    "summary": "Add interactions; a reference already present for the customer is not added again",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Interaction"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Interaction"}},
                    ]}}}},
                    "responses": {
                        "200": _reply("Added", {"type": "object", "properties": {
                            "added": {"type": "integer"}, "unchanged": {"type": "integer"}}}),
                        **_refusals("400", "413", "415", "422"),
                    },
                },
            },
        },
    }
