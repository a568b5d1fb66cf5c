"""What every service's HTTP API shares: JSON error bodies, paging, size limits, and a bearer
token with roles on every request that changes state."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from sinew.contracts.common import require_finite

log = logging.getLogger("sinew.http")

MAX_REQUEST_BYTES = 1024 * 1024
MAX_PAGE = 500
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_encoder = msgspec.json.Encoder(decimal_format="string")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return json_response(body, status)


class ApiError(web.HTTPException):
    """Raise from a handler to answer with a JSON error body."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        self.status_code = status
        super().__init__()
        self.response = error_response(status, code, message, **details)


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


PRINCIPAL = web.RequestKey("principal", Principal)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """Bearer tokens from the site's tokens file: {sha256(token): {"name": ..., "roles": [...]}}.
    Only hashes are stored, so the file does not hand out the tokens themselves."""

    def __init__(self, entries: dict[str, dict]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path | None) -> Tokens:
        return cls(json.loads(path.read_text()) if path and path.exists() else {})

    def principal(self, authorization: str | None) -> Principal | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        presented = hash_token(authorization.removeprefix("Bearer ").strip())
        for digest, entry in self._entries.items():
            if hmac.compare_digest(digest, presented):
                return Principal(entry["name"], frozenset(entry.get("roles", [])))
        return None


def requires(*roles: str) -> Callable:
    """Mark a handler as needing one of these roles (the middleware already demands a token for
    every request that changes state)."""

    def mark(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
        handler.__sinew_roles__ = frozenset(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def _middleware(tokens: Tokens) -> Callable:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            roles = getattr(handler, "__sinew_roles__", None)
            if request.method not in SAFE_METHODS or roles:
                principal = tokens.principal(request.headers.get("Authorization"))
                if principal is None:
                    return error_response(
                        401, "unauthenticated", "a valid bearer token is required"
                    )
                if roles and not (roles & principal.roles) and "admin" not in principal.roles:
                    return error_response(
                        403,
                        "forbidden",
                        f"needs one of the roles {sorted(roles)}",
                        roles=sorted(principal.roles),
                    )
                request[PRINCIPAL] = principal
            return await handler(request)
        except ApiError as error:
            return error.response
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "too_large", f"request body over {MAX_REQUEST_BYTES} bytes")
        except web.HTTPException as error:
            return error_response(
                error.status, error.reason.lower().replace(" ", "_"), error.text or error.reason
            )
        except msgspec.ValidationError as error:
            return error_response(422, "invalid", str(error))
        except msgspec.DecodeError as error:
            return error_response(400, "malformed", f"malformed JSON: {error}")
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error; see the service log")

    return middleware


def create_app(tokens: Tokens) -> web.Application:
    return web.Application(middlewares=[_middleware(tokens)], client_max_size=MAX_REQUEST_BYTES)


def page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", 50))
        offset = int(request.query.get("offset", 0))
    except ValueError:
        raise ApiError(400, "bad_paging", "limit and offset must be integers") from None
    if not (1 <= limit <= MAX_PAGE) or offset < 0:
        raise ApiError(400, "bad_paging", f"limit must be 1..{MAX_PAGE}, offset >= 0")
    return limit, offset


def paged(items: list, total: int, limit: int, offset: int) -> web.Response:
    following = offset + len(items)
    return json_response(
        {
            "items": items,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": following if following < total else None,
        }
    )


async def decode_body(request: web.Request, type_: type) -> Any:
    body = await request.read()
    decoded = msgspec.json.decode(body, type=type_)
    require_finite(body, decoded)
    return decoded
