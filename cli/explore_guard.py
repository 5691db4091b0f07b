"""The gate in front of Model Explorer's server: only this run's graph and overlays, only for this session.

Model Explorer's Flask app answers `/api/v1/read_text_file?path=ANY` and runs its adapters on any `modelPath` for
any caller, whatever the `Host:` header says, so a web page the user visits could read their files by DNS
rebinding. edgeship therefore never lets that app listen by itself: it serves the app through `ExploreGuard`, a
WSGI wrapper that
- answers only requests whose Host is the loopback address it listens on (a rebound name is refused),
- wants the per-session token from the printed URL (then a SameSite=Strict, HttpOnly cookie),
- refuses the endpoints that read or upload arbitrary files or change the server's config, and lets the adapters
  convert one file only: the artifact being explored. Overlays travel inside the config, never as file paths.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from edgeship.runtime.errors import UsageError

COOKIE = "edgeship_explore"
LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")
REFUSED_PATHS = frozenset({  # what reads, uploads or re-points files, whatever its arguments
    "/api/v1/read_text_file", "/apipost/v1/upload", "/apipost/v1/update_config", "/apipost/v1/refresh_page",
    "/api/v1/notify_user_provided_model_path",
})
COMMAND_PATHS = ("/api/v1/send_command", "/apipost/v1/send_command")
MAX_COMMAND_BYTES = 1 << 20


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_host(host: str, allow_remote: bool) -> None:
    """A non-loopback --host exposes the viewer to the network: only when the user says so in so many words."""
    if host not in LOOPBACK and not allow_remote:
        raise UsageError(f"--host {host}: serving beyond this machine lets others on the network reach the viewer; "
                         f"pass --allow-remote as well if that is what you want (the session token still applies)")


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Host header values a request may carry: the loopback names on PORT, and HOST itself when it is another."""
    names = set(LOOPBACK[:3]) | {host if ":" not in host or host.startswith("[") else f"[{host}]"}
    return frozenset(f"{name}:{port}" for name in names)


class ExploreGuard:
    """WSGI middleware around Model Explorer's app (see the module docstring)."""

    def __init__(self, app, model_path: Path, hosts: frozenset[str], token: str):
        self.app, self.hosts, self.token = app, hosts, token
        self.model_path = os.path.realpath(model_path)

    def __call__(self, environ, start_response):
        if environ.get("HTTP_HOST", "") not in self.hosts:
            return _refuse(start_response, "this viewer answers only on its own loopback address")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        by_query = _same(query.get("token", [""])[0], self.token)
        cookie = SimpleCookie()
        try:
            cookie.load(environ.get("HTTP_COOKIE", ""))
        except Exception:  # a malformed cookie header: as if there were none
            cookie = SimpleCookie()
        by_cookie = COOKIE in cookie and _same(cookie[COOKIE].value, self.token)
        if not (by_query or by_cookie):
            return _refuse(start_response, "open the URL edgeship explore printed (it carries this session's token)")
        path = environ.get("PATH_INFO", "")
        if path in REFUSED_PATHS:
            return _refuse(start_response, f"{path} is switched off by edgeship explore")
        if path in COMMAND_PATHS and not self._own_model(environ, query):
            return _refuse(start_response, "commands may name only the artifact being explored")
        if not by_query:
            return self.app(environ, start_response)

        def with_cookie(status, headers, exc_info=None):
            headers = [*headers, ("Set-Cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict")]
            return start_response(status, headers, exc_info)

        return self.app(environ, with_cookie)

    def _own_model(self, environ, query) -> bool:
        """Whether the command's modelPath is the explored artifact (a POST body is read and put back)."""
        if environ.get("REQUEST_METHOD") == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return False
            if not 0 <= length <= MAX_COMMAND_BYTES:
                return False
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            text = body.decode("utf-8", "replace")
        else:
            text = query.get("json", ["{}"])[0]
        try:
            command = json.loads(text)
        except (ValueError, RecursionError):
            return False
        model = command.get("modelPath") if isinstance(command, dict) else None
        return isinstance(model, str) and os.path.realpath(os.path.expanduser(model)) == self.model_path


def _same(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _refuse(start_response, why: str):
    body = f"403 Forbidden: {why}\n".encode()
    start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def serve_guarded(app, host: str, port: int, guard_args: dict) -> None:
    """Serve APP behind ExploreGuard on HOST:PORT until the process ends (Model Explorer's own thread calls this
    in place of Flask's `app.run`)."""
    from werkzeug.serving import make_server

    make_server(host, port, ExploreGuard(app, **guard_args), threaded=True).serve_forever()
