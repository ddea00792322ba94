"""Binding policy, API key and request guards of the HTTP endpoint.

- The server binds 127.0.0.1 by default. Binding any other address needs an API key
  (``serve.api_key`` or env ``PHYSGM_API_KEY``): ``check_bind`` refuses to start without.
- With a key, every ``/v1/*`` request must carry it in the ``X-API-Key`` header (401
  otherwise); ``/``, ``/static``, ``/healthz`` and the OpenAPI document stay open (they hold
  no data). The replica keeps only the key's SHA-256, compared in constant time.
- ``RequestGuard`` (ASGI middleware, runs before FastAPI parses anything) caps the request
  body: a ``Content-Length`` above the limit is answered 413 without reading the body, and a
  streamed body is counted chunk by chunk and cut off at the limit. Uploads to ``/v1/*``
  must be ``multipart/form-data`` (415 otherwise).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from typing import Optional

from starlette.exceptions import HTTPException

API_KEY_ENV = "PHYSGM_API_KEY"
API_KEY_HEADER = "x-api-key"
PROTECTED_PREFIX = "/v1/"


def resolve_api_key(configured: Optional[str]) -> Optional[str]:
    """The config's key, else env PHYSGM_API_KEY, else None (blank counts as unset)."""
    key = configured or os.environ.get(API_KEY_ENV) or None
    return key.strip() or None if key else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: Optional[str]) -> None:
    """Raise ValueError unless ``host`` is loopback or an API key is set."""
    if not is_loopback(host) and not api_key:
        raise ValueError(f"binding {host} exposes the model beyond this machine: set an API key "
                         f"(serve.api_key in the config, or env {API_KEY_ENV}) or bind 127.0.0.1")
    if api_key is not None and len(api_key) < 16:
        raise ValueError("the API key is shorter than 16 characters; use a long random one "
                         "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")


def key_digest(api_key: Optional[str]) -> Optional[str]:
    return hashlib.sha256(api_key.encode()).hexdigest() if api_key else None


def key_matches(given: Optional[str], digest: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), digest)


def _header(scope, name: str) -> Optional[str]:
    for k, v in scope.get("headers", []):
        if k.decode("latin-1").lower() == name:
            return v.decode("latin-1")
    return None


class RequestGuard:
    """ASGI middleware: API key on /v1/*, body cap (``max_bytes``), multipart-only uploads."""

    def __init__(self, app, max_bytes: int, api_key_digest: Optional[str] = None):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.digest = api_key_digest

    async def _reject(self, send, status: int, detail: str, headers=()) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> str:
        return (f"request body exceeds {self.max_bytes / 2 ** 20:g} MB; send smaller or fewer "
                "images (the server's limit is serve.max_request_mb)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        protected = path.startswith(PROTECTED_PREFIX)
        if protected and self.digest and not key_matches(_header(scope, API_KEY_HEADER),
                                                          self.digest):
            return await self._reject(send, 401, "missing or wrong API key: send it in the "
                                      "X-API-Key header", [(b"www-authenticate", b"X-API-Key")])
        length = _header(scope, "content-length")
        if length is not None:
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                return await self._reject(send, 400, f"invalid Content-Length {length!r}")
            if n > self.max_bytes:
                return await self._reject(send, 413, self._too_large())
        if protected and scope.get("method") == "POST":
            ctype = (_header(scope, "content-type") or "").split(";")[0].strip().lower()
            if ctype != "multipart/form-data":
                return await self._reject(
                    send, 415, f"content type {ctype or '(none)'!r} is not accepted: send "
                    "multipart/form-data with the files in the field 'images' (curl -F "
                    "images=@view.png)")

        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._too_large())
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if started or exc.status_code != 413:
                raise
            await self._reject(send, 413, str(exc.detail))
