"""The web server: dashboard pages, /api/v1, /metrics, on the honeypot's own event loop.

Security: every response carries a strict Content-Security-Policy (scripts, styles,
media only from this server; no inline script or style; no frames). Without an admin
token the server is read-only; off loopback the token is needed for everything. The token
comes as `Authorization: Bearer TOKEN`, or once as `?token=` (then kept in an HttpOnly,
SameSite=Strict cookie).
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from .. import __version__
from ..actions.lift import lift_block
from ..actions.settings import ActionSpec
from . import metrics, pages
from .blocks import BLOCK_FILTERS, list_blocks, shown, source_blocks
from .control import NoHoneypot
from .openapi import document
from .queries import RESOURCES, Page, Query, QueryError, list_resource, make_query
from .settings import WebSettings

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
COOKIE = "siptrap_token"
Control = Callable[[list[str], str], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PAGE_FILTERS = {
    "sources": ("src_ip",),
    "alerts": ("src_ip", "category", "tool", "severity"),
    "credentials": ("src_ip", "username", "result"),
    "numbers": ("src_ip",),
    "calls": ("src_ip", "called_number"),
}
PAGE_COLUMNS = {
    "sources": (
        "src_ip country first_seen last_seen requests auth_attempts calls registrations malformed"
        " user_agents"
    ),
    "alerts": "ts src_ip category severity tool count targets conclusions evidence",
    "credentials": "ts src_ip method username realm result password password_source user_agent",
    "numbers": "number calls sources country type kind first_seen last_seen",
    "blocks": "src_ip step category since expires left count alert_id",
}
LIFT_HOW = (
    "With the admin token each block has a lift button here; a block is also lifted with"
    ' `siptrap ctl blocks lift ADDR`, or POST /api/v1/blocks/lift {"src_ip": "ADDR"}.'
)


class WebServer:
    def __init__(
        self,
        data_dir: Path,
        settings: WebSettings,
        sensor: str = "siptrap",
        registry: CollectorRegistry | None = None,
        control: Control | None = None,
        actions: tuple[ActionSpec, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db = data_dir / "siptrap.db"
        self.settings = settings
        self.sensor = sensor
        self.registry = registry
        self.control = control
        self.actions = actions  # what a lift undoes, as `siptrap blocks lift` does
        self.env = pages.environment()
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    # -- the application --------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._auth, self._errors])
        r = app.router
        r.add_get("/", self.page_overview)
        r.add_get("/live", self.page_live)
        r.add_get("/sources", self.page_list("sources"))
        r.add_get("/sources/{addr}", self.page_source)
        r.add_get("/alerts", self.page_list("alerts"))
        r.add_get("/credentials", self.page_list("credentials"))
        r.add_get("/numbers", self.page_list("numbers"))
        r.add_get("/calls", self.page_calls)
        r.add_get("/blocks", self.page_blocks)
        r.add_post("/blocks/lift", self.form_lift)
        r.add_get("/recordings/{id:[0-9]{1,12}}/{kind}", self.recording)
        r.add_get("/metrics", self.metrics)
        r.add_get("/favicon.ico", self.no_icon)
        r.add_get("/api/v1/openapi.json", self.openapi)
        r.add_get("/api/v1/overview", self.api_overview)
        for name in RESOURCES:
            r.add_get(f"/api/v1/{name}", self.api_list(name))
        r.add_get("/api/v1/blocks", self.api_blocks)
        r.add_post("/api/v1/blocks/lift", self.api_lift)
        r.add_post("/api/v1/control", self.api_control)
        r.add_static("/static", pages.STATIC, show_index=False, follow_symlinks=False)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = site._server  # the bound port, when 0 was asked for
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middlewares ------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def _token_ok(self, request: web.Request) -> bool:
        token = self.settings.token
        if not token:
            return False
        given = request.headers.get("Authorization", "")
        candidates = [
            given[7:] if given.startswith("Bearer ") else "",
            request.cookies.get(COOKIE, ""),
            request.query.get("token", ""),
        ]
        return any(c and hmac.compare_digest(c.encode(), token.encode()) for c in candidates)

    def _local(self, request: web.Request) -> bool:
        try:
            return ipaddress.ip_address(request.remote or "").is_loopback
        except ValueError:
            return False

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        admin = self._token_ok(request)
        open_to_read = self.settings.loopback and self._local(request)
        if not admin and not open_to_read:
            return _error(401, "a token is required (Authorization: Bearer TOKEN)")
        response = await handler(request)
        if admin and request.query.get("token") and not isinstance(response, web.FileResponse):
            response.set_cookie(COOKIE, self.settings.token, httponly=True, samesite="Strict")
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except QueryError as exc:
            return _error(400, str(exc))
        except FileNotFoundError:
            return _error(503, "no database yet: siptrap has recorded nothing here")

    # -- pages ------------------------------------------------------------------------
    def _render(self, name: str, **context: Any) -> web.Response:
        html = self.env.get_template(name).render(sensor=self.sensor, **context)
        return web.Response(text=html, content_type="text/html")

    async def page_overview(self, request: web.Request) -> web.Response:
        q = make_query(dict(request.query), (), forms=True)
        context = await asyncio.to_thread(pages.overview_context, self.db, q)
        return self._render(
            "overview.html",
            title="Overview",
            live=True,
            filters=_shown(q),
            filter_names=(),
            **context,
        )

    async def page_live(self, request: web.Request) -> web.Response:
        q = make_query(dict(request.query), (), forms=True)
        context = await asyncio.to_thread(pages.overview_context, self.db, q)
        return self._render("overview_body.html", **context)

    def page_list(self, name: str) -> Handler:
        allowed = PAGE_FILTERS[name]

        async def handler(request: web.Request) -> web.Response:
            q = make_query(dict(request.query), allowed, forms=True)
            q = Query(q.since, q.until, min(q.limit, 200), q.cursor, q.filters)
            rows, cursor = await asyncio.to_thread(pages.page_rows, self.db, name, q)
            return self._render(
                "table.html",
                title=name.capitalize(),
                columns=PAGE_COLUMNS[name].split(),
                rows=rows,
                links={"src_ip": "/sources/"},
                filters=_shown(q),
                filter_names=allowed,
                next_url=_next(request, cursor),
                intro="",
            )

        return handler

    async def page_calls(self, request: web.Request) -> web.Response:
        q = make_query(dict(request.query), PAGE_FILTERS["calls"], forms=True)
        q = Query(q.since, q.until, min(q.limit, 200), q.cursor, q.filters)
        rows, cursor = await asyncio.to_thread(pages.calls_rows, self.db, q)
        return self._render(
            "calls.html",
            title="Calls",
            calls=rows,
            prefix="",
            filters=_shown(q),
            filter_names=PAGE_FILTERS["calls"],
            next_url=_next(request, cursor),
        )

    async def page_blocks(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        lifted = _address(params.pop("lifted", ""))  # where a lift button came back to
        q = make_query(params, BLOCK_FILTERS, forms=True)
        q = Query(q.since, q.until, min(q.limit, 200), q.cursor, q.filters)
        page = await asyncio.to_thread(list_blocks, self.data_dir, q)
        return self._render(
            "table.html",
            title="Blocks",
            columns=PAGE_COLUMNS["blocks"].split(),
            rows=shown(page.items),
            links={"src_ip": "/sources/"},
            filters=_shown(q),
            filter_names=BLOCK_FILTERS,
            next_url=_next(request, page.next_cursor),
            intro=LIFT_HOW,
            lift_csrf=self._csrf() if self._token_ok(request) else None,
            lifted=lifted,
        )

    def _csrf(self) -> str:
        """The value the lift form carries: derived from the admin token, so a page of
        another site cannot know it (and the cookie is SameSite=Strict as well)."""
        key = self.settings.token.encode()
        return hmac.new(key, b"siptrap blocks lift form", "sha256").hexdigest()

    async def form_lift(self, request: web.Request) -> web.StreamResponse:
        """The Blocks page's lift button: a form POST with the admin token (cookie or
        header) and the form's CSRF value; then back to the page (303)."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        # Origin is "null" from our own page (its Referrer-Policy is no-referrer); another
        # site's is refused. The CSRF value (and the SameSite=Strict cookie) do the rest.
        origin = request.headers.get("Origin", "null")
        if origin not in ("null", f"{request.scheme}://{request.host}"):
            return _error(403, "a lift comes from this server's own page")
        form = await request.post()
        csrf, address = form.get("csrf"), form.get("src_ip")
        if not isinstance(csrf, str) or not hmac.compare_digest(csrf, self._csrf()):
            return _error(403, "the form's CSRF value is missing or wrong")
        if not isinstance(address, str):
            return _error(400, "src_ip: the address to lift")
        try:
            result = await self.lift(address, f"api {request.remote} (blocks page)")
        except ValueError as exc:
            return _error(400, str(exc))
        if result["errors"]:
            return _error(502, "; ".join(result["errors"]))
        raise web.HTTPSeeOther(f"/blocks?lifted={result['src_ip']}")

    async def page_source(self, request: web.Request) -> web.Response:
        try:
            addr = str(ipaddress.ip_address(request.match_info["addr"]))
        except ValueError:
            return _error(404, "not an address")
        cursor_text = request.query.get("cursor", "")
        cursor = int(cursor_text) if cursor_text.isdigit() else None
        context = await asyncio.to_thread(pages.source_context, self.db, addr, cursor)
        context["blocks"] = await asyncio.to_thread(source_blocks, self.data_dir, addr)
        next_cursor = context.pop("next_cursor")
        return self._render(
            "source.html",
            title=f"Source {addr}",
            next_url=f"/sources/{addr}?cursor={next_cursor}" if next_cursor else None,
            **context,
        )

    async def recording(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind not in ("in.wav", "out.wav", "pcap"):
            return _error(404, "no such file kind")
        rec_id = int(request.match_info["id"])
        path = await asyncio.to_thread(pages.recording_path, self.db, self.data_dir, rec_id, kind)
        if path is None:
            return _error(404, "no such recording")
        if kind == "pcap":
            return web.FileResponse(
                path,
                headers={
                    "Content-Type": "application/vnd.tcpdump.pcap",
                    "Content-Disposition": f'attachment; filename="recording-{rec_id}.pcap"',
                },
            )
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    # -- metrics and API --------------------------------------------------------------
    async def metrics(self, request: web.Request) -> web.Response:
        if self.registry is None:
            return _error(404, "no metrics here")
        body = await asyncio.to_thread(metrics.render, self.registry)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document(__version__))

    async def api_overview(self, request: web.Request) -> web.Response:
        q = make_query(dict(request.query), ())
        result = await asyncio.to_thread(_overview_json, self.db, q)
        return web.json_response(result)

    def api_list(self, name: str) -> Handler:
        allowed = RESOURCES[name]

        async def handler(request: web.Request) -> web.Response:
            q = make_query(dict(request.query), allowed)
            fmt = request.query.get("format", "json")
            if fmt not in ("json", "csv"):
                raise QueryError("format: json or csv")
            page = await asyncio.to_thread(list_resource, self.db, name, q)
            return _page_response(name, fmt, page)

        return handler

    async def api_blocks(self, request: web.Request) -> web.Response:
        q = make_query(dict(request.query), BLOCK_FILTERS)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise QueryError("format: json or csv")
        page = await asyncio.to_thread(list_blocks, self.data_dir, q)
        return _page_response("blocks", fmt, page)

    def _refused(self, request: web.Request) -> web.Response | None:
        """Why a request that changes something is refused (None: it holds the token)."""
        if not self.settings.token:
            option = self.settings.token_option
            return _error(403, f"read-only: start the web server with {option} TOKEN to control")
        if not self._token_ok(request):
            return _error(401, "the admin token is required (Authorization: Bearer TOKEN)")
        return None

    async def api_lift(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        address = body.get("src_ip") if isinstance(body, dict) else None
        if not isinstance(address, str):
            return _error(400, 'expected {"src_ip": "ADDR"}')
        try:
            result = await self.lift(address, f"api {request.remote}")
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response(result, status=502 if result["errors"] else 200)

    async def lift(self, address: str, who: str) -> dict[str, Any]:
        """Lift a block as `siptrap ctl blocks lift` does: through the running honeypot
        (which records `sensor.control`), or here when none runs on the data directory.
        ValueError when `address` is not an address."""
        if self.control is not None:
            try:
                return await self.control(["blocks", "lift", address], who)
            except NoHoneypot:
                pass  # siptrap web over a data directory no honeypot serves now
        lifted = await asyncio.to_thread(lift_block, self.data_dir, address, self.actions)
        log.info("web: block on %s lifted by %s (no honeypot running)", lifted.src_ip, who)
        return {"src_ip": lifted.src_ip, "lifted": lifted.known, "errors": list(lifted.errors)}

    async def api_control(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.control is None:
            return _error(503, "no running honeypot to control")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        command = body.get("command") if isinstance(body, dict) else None
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            return _error(400, 'expected {"command": ["word", ...]}')
        who = f"api {request.remote}"
        try:
            result = await self.control(command, who)
        except NoHoneypot as exc:
            return _error(503, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response(result)


def _overview_json(db: Path, q: Query) -> dict[str, Any]:
    from .queries import reader
    from .summary import overview

    with reader(db) as conn:
        return overview(conn, q.since, q.until).as_json()


def _page_response(name: str, fmt: str, page: Page) -> web.Response:
    if fmt == "csv":
        return web.Response(
            text=to_csv(page.items),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return web.json_response({"items": page.items, "next_cursor": page.next_cursor})


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _shown(q: Query) -> dict[str, str]:
    shown = dict(q.filters)
    shown["since"] = pages._utc(q.since) if q.since is not None else ""
    shown["until"] = pages._utc(q.until) if q.until is not None else ""
    return shown


def _next(request: web.Request, cursor: int | None) -> str | None:
    if cursor is None:
        return None
    query = {k: v for k, v in request.query.items() if k not in ("cursor", "token")}
    query["cursor"] = str(cursor)
    return str(request.rel_url.with_query(query))


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA):
        return "'" + text
    return text


def to_csv(items: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for item in items:
        columns += [k for k in item if k not in columns]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in columns])
    return out.getvalue()
