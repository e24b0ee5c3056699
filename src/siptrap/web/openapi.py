"""The OpenAPI 3.0 document of /api/v1, built from the resources the API serves."""

from __future__ import annotations

from typing import Any

from .blocks import BLOCK_FILTERS
from .queries import MAX_CURSOR, MAX_LIMIT, RESOURCES

_ERROR = {
    "description": "a wrong parameter",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_DENIED = {"description": "no or wrong token", "content": _ERROR["content"]}


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


# epoch seconds, or an RFC 3339 date-time (ISO 8601 dates and times are accepted too)
TIME: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": -1e12, "maximum": 1e12},
        {"type": "string", "format": "date-time"},
    ]
}
COMMON = [
    _param("since", TIME, "from this time: ISO 8601 (UTC if no zone) or epoch seconds"),
    _param("until", TIME, "before this time"),
    _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "rows per page"),
    _param(
        "cursor",
        {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR},
        "next_cursor of the previous page",
    ),
    _param("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
]


def _list_path(name: str, filters: tuple[str, ...]) -> dict[str, Any]:
    params = COMMON + [
        _param(f, {"type": "string"}, f"only rows whose {f} is this") for f in filters
    ]
    return {
        "get": {
            "operationId": f"list_{name}",
            "summary": f"{name.replace('_', ' ')}, newest first",
            "parameters": params,
            "responses": {
                "200": {
                    "description": "one page",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": _ERROR,
                "401": _DENIED,
                "503": {"description": "no database yet", "content": _ERROR["content"]},
            },
        }
    }


ADDRESS: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
}
_LIFTED = {
    "type": "object",
    "required": ["src_ip", "lifted", "errors"],
    "properties": {
        "src_ip": {"type": "string"},
        "lifted": {"type": "boolean", "description": "false: it was not blocked"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
}
LIFT = {
    "post": {
        "operationId": "lift_block",
        "summary": "lift a block everywhere it was pushed, as `siptrap blocks lift` (admin token;"
        " a running honeypot records it as sensor.control)",
        "security": [{"token": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["src_ip"],
                        "properties": {"src_ip": ADDRESS},
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "lifted", "content": {"application/json": {"schema": _LIFTED}}},
            "400": _ERROR,
            "401": _DENIED,
            "403": _DENIED,
            "502": {
                "description": "lifted here, but an action could not take it out",
                "content": {"application/json": {"schema": _LIFTED}},
            },
        },
    }
}


def _blocks_path() -> dict[str, Any]:
    path = _list_path("blocks", BLOCK_FILTERS)
    get = path["get"]
    get["summary"] = "sources the policy ladder blocks now, newest first (as `blocks list`)"
    del get["responses"]["503"]  # read from blocks.json: none is an empty list
    return path


def document(version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        f"/api/v1/{name}": _list_path(name, filters) for name, filters in RESOURCES.items()
    }
    paths["/api/v1/blocks"] = _blocks_path()
    paths["/api/v1/blocks/lift"] = LIFT
    paths["/api/v1/overview"] = {
        "get": {
            "operationId": "overview",
            "summary": "the overview's counts over time and top lists",
            "parameters": COMMON[:2],
            "responses": {
                "200": {
                    "description": "the overview",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": _ERROR,
                "401": _DENIED,
                "503": {"description": "no database yet", "content": _ERROR["content"]},
            },
        }
    }
    paths["/api/v1/control"] = {
        "post": {
            "operationId": "control",
            "summary": "a siptrap ctl command (admin token required)",
            "security": [{"token": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["command"],
                            "properties": {
                                "command": {"type": "array", "items": {"type": "string"}}
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the command's result",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": _ERROR,
                "401": _DENIED,
                "403": _DENIED,
                "503": {"description": "no running honeypot", "content": _ERROR["content"]},
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "siptrap", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Page": {
                    "type": "object",
                    "required": ["items", "next_cursor"],
                    "properties": {
                        "items": {"type": "array", "items": {"type": "object"}},
                        "next_cursor": {"type": "integer", "nullable": True},
                    },
                }
            },
        },
    }
