"""``cardrenew serve``: the TUI in a browser (a kiosk or thin client), built on textual-serve.

textual-serve serves a page whose script opens a websocket to ``/ws``; every websocket starts a
process of the served command and relays its terminal. Used as it comes (``textual serve``), the
upgrade request's ``Origin`` is not checked and connections are not limited, so any web page open
in the kiosk browser could open the websocket, read the holder's name and type PINs until the card
blocked, and each socket started a shell and an app (issue 12 item 6). :class:`KioskServer` adds:

- **Origin check** (RFC 6455 §4.2.2 / §10.2): a websocket upgrade whose ``Origin`` is not one of
  the page's own origins is answered ``403`` before any process starts; no ``Origin`` (a client
  that is not a browser) is refused too. The page's own origins are ``http://HOST:PORT`` for the
  bound host and, when it is a loopback address, ``localhost``/``127.0.0.1``/``[::1]``; or the
  origin of ``--public-url`` behind a proxy. The ``Host`` header is checked against the same names,
  so a DNS-rebinding page (whose origin would equal its own host) is refused as well.
- **One live session** per server, i.e. per reader: a second browser gets ``409`` "in use" (the
  page, which retries every 5 s, and the websocket), and no second process; the slot is freed
  when the first session ends (a session whose browser has gone is waited for, up to 10 s, so a
  kiosk that reloads its page gets its session back).
- The app is started **without a shell**, one process per session (``sys.executable -m tui``), with
  cardrenew's own web driver (``tui.driver:WebDriver``: undecodable input never ends it).
- The **terminal size** a browser asks for (``/ws?width=…&height=…`` and every ``resize`` message)
  is clamped to :data:`MIN_SIZE`–:data:`MAX_SIZE` cells; a size that is not a number keeps the
  last one. Unclamped, ``20000×20000`` made the app build a 400-million-cell screen (185 MB, never
  drawn) and hold the reader's one session.
- The page may not be framed by another site (``X-Frame-Options: DENY``, CSP ``frame-ancestors``),
  so a foreign page cannot overlay the kiosk and catch clicks (clickjacking).

What it does **not** do: authenticate. Anyone who can reach the port can use the card reader as the
holder sitting at it could (a local user of the host, or anyone on the network if it is bound to a
non-loopback address). Keep it on loopback (the kiosk browser on the same host), or behind a
reverse proxy that authenticates, and pass that proxy's address as ``--public-url``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

log = logging.getLogger("cardrenew.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
DRIVER = "tui.driver:WebDriver"
MIN_SIZE = (20, 5)
"""The smallest terminal (columns, rows) a session gets: below it nothing readable can be drawn."""
MAX_SIZE = (500, 200)
"""The largest terminal (columns, rows) a session gets: a 4K screen at a 6-pixel font is ~640×180."""
IN_USE = ("This card reader is in use by another cardrenew session. Finish or close that session "
          "(or wait until it logs off), then reload this page.")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clamp_size(width: object, height: object, default: tuple[int, int] = (80, 24)) -> tuple[int, int]:
    """``(columns, rows)`` within :data:`MIN_SIZE`–:data:`MAX_SIZE`.

    ``width``/``height`` come from the browser (a query string or a ``resize`` message's JSON), so
    anything may arrive: an integer (or a string of one) is clamped; anything else (``None``, a
    float, ``"1e9"``, a list, ``True``) takes the value from ``default``.
    """
    size = []
    for value, fallback, low, high in zip((width, height), default, MIN_SIZE, MAX_SIZE):
        number = fallback
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 20:
            number = int(value)
        size.append(min(max(number, low), high))
    return size[0], size[1]


def browser_envelope(text: str) -> tuple[str, object] | None:
    """``(kind, data)`` of one websocket text message ``[kind, data?]``, or None when it is not one
    (not JSON, nested too deeply, not a list starting with a string)."""
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, list) or not envelope or not isinstance(envelope[0], str):
        return None
    return envelope[0], envelope[1] if len(envelope) > 1 else None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-case, default ports left out (RFC 6454 §6.1).

    Raises:
        ValueError: ``url`` cannot be parsed (a port that is not 0–65535, an unclosed ``[``).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    port = parts.port
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


class _AppProcess(AppService):
    """textual-serve's AppService, started from an argument list (no shell) with our web driver."""

    def __init__(self, argv: Sequence[str], **kwargs: Any) -> None:
        super().__init__(shlex.join(argv), **kwargs)
        self.argv = list(argv)
        self.closing = False
        """The browser has gone; the app is being asked to quit."""
        self.size = (80, 24)
        """The terminal size (columns, rows) the app was last given, always within the clamp."""

    async def start(self, width: int, height: int) -> None:
        self.size = clamp_size(width, height, self.size)
        await super().start(*self.size)

    async def set_terminal_size(self, width: int, height: int) -> None:
        """A browser's ``resize``, clamped (see :func:`clamp_size`)."""
        self.size = clamp_size(width, height, self.size)
        await super().set_terminal_size(*self.size)

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width, height)
        environment["TEXTUAL_DRIVER"] = DRIVER
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._build_environment(width=width, height=height))
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the app to quit; after ``timeout_s`` end it (SIGKILL) so the reader is freed."""
        try:
            await asyncio.wait_for(super().stop(), timeout_s)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        process = self._process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 2.0)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


class KioskServer(Server):
    """Serve ``cardrenew ARGS`` to one browser at a time, from its own origin only.

    Args:
        app_args: the arguments of the served ``cardrenew`` (e.g. ``["--kiosk"]``).
        host, port: where to listen (default loopback; see the module docstring for why).
        public_url: the URL browsers use when a proxy stands in front (its origin is the one allowed).
    """

    def __init__(self, app_args: Sequence[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 public_url: str | None = None) -> None:
        self.app_argv = [sys.executable, "-m", "tui", *app_args]
        shown = shlex.join(["cardrenew", *app_args])
        url_host = f"[{host}]" if ":" in host else host
        super().__init__(shown, host=host, port=port, title=shown,
                         public_url=public_url or f"http://{url_host}:{port}")
        local = self._local_origins()
        self.allowed_origins = {origin_of(public_url)} if public_url else local
        """Origins whose pages may open a session: the page's own (RFC 6454)."""
        self.allowed_hosts = {urlsplit(origin).netloc for origin in local | self.allowed_origins}
        """``Host`` headers answered at all (a proxy may pass the public one or ours)."""
        self.session: _AppProcess | None = None
        """The live session (one per server, i.e. per reader), or None."""
        self.sessions_started = 0

    def _local_origins(self) -> set[str]:
        names = [self.host] + (list(LOOPBACK_NAMES) if is_loopback(self.host) else [])
        origins = set()
        for name in names:
            name = f"[{name}]" if ":" in name and not name.startswith("[") else name
            origins.add(origin_of(f"http://{name}:{self.port}"))
        return origins

    # -- checks -----------------------------------------------------------------------------------
    def refusal(self, request: web.Request) -> web.Response | None:
        """Why ``request`` may not open a session (a response to send), or None."""
        if request.host.lower() not in self.allowed_hosts:
            return web.Response(status=403, text="Forbidden: unknown Host.\n")
        origin = request.headers.get("Origin")
        try:
            allowed = origin is not None and origin_of(origin) in self.allowed_origins
        except ValueError:  # a malformed Origin is a foreign one (fail closed, no 500)
            allowed = False
        if not allowed:
            log.warning("refused a websocket from origin %r", origin)
            return web.Response(status=403, text="Forbidden: this page's origin may not use the card reader.\n")
        return None

    # -- aiohttp ----------------------------------------------------------------------------------
    async def _make_app(self) -> web.Application:
        app = await super()._make_app()

        @web.middleware
        async def no_framing(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path != "/ws" and request.host.lower() not in self.allowed_hosts:
                return web.Response(status=403, text="Forbidden: unknown Host.\n")
            response = await handler(request)
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        app.middlewares.append(no_framing)
        return app

    def initialize_logging(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    async def on_startup(self, app: web.Application) -> None:
        print(f"Serving {self.title} on {self.public_url} (one session at a time; Ctrl+C to stop).", flush=True)
        if not is_loopback(self.host):
            print("Warning: not on loopback. There is no authentication: anyone who reaches this port can "
                  "use the card reader. Put an authenticating proxy in front.", file=sys.stderr, flush=True)

    async def on_shutdown(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.stop()

    async def _wait_for_a_closing_session(self, timeout_s: float = 10.0) -> None:
        """A session whose browser has gone (a kiosk reloading its page) is given time to end."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (self.session is not None and self.session.closing
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.1)

    async def handle_index(self, request: web.Request) -> Any:
        await self._wait_for_a_closing_session()
        if self.session is not None:
            # A small page that says why and tries again (a kiosk that reloads its own page asks
            # for it before its old session has closed).
            return web.Response(status=409, content_type="text/html",
                                text=f'<!DOCTYPE html><html><head><meta http-equiv="refresh" content="5">'
                                     f'<title>In use</title></head><body><p>{IN_USE}</p>'
                                     f'<p>This page tries again every 5 seconds.</p></body></html>\n')
        return await super().handle_index(request)

    async def _process_messages(self, websocket: web.WebSocketResponse, app_service: AppService) -> None:
        """The browser's messages to the app (``["stdin", text]``, ``["resize", {"width", "height"}]``,
        ``["ping", x]``, ``["blur"]``, ``["focus"]``). A message that is not such an envelope — not
        JSON, not a list, a field of the wrong type, text that cannot be UTF-8 (a lone surrogate) —
        is dropped and logged; it used to end the session with a traceback (tester F-9)."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            envelope = browser_envelope(message.data)
            if envelope is None:
                log.info("dropped a websocket message that is not an envelope (%d characters)", len(message.data))
                continue
            kind, data = envelope
            if kind == "stdin" and isinstance(data, str):
                await app_service.send_bytes(data.encode("utf-8", "replace"))  # a lone surrogate becomes "?"
            elif kind == "resize" and isinstance(data, dict):
                size = app_service.size if isinstance(app_service, _AppProcess) else (80, 24)
                await app_service.set_terminal_size(*clamp_size(data.get("width"), data.get("height"), size))
            elif kind == "ping":
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await app_service.blur()
            elif kind == "focus":
                await app_service.focus()

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]  # a refusal is a plain 403 response, which aiohttp serves from any handler
        refused = self.refusal(request)
        if refused is not None:
            return refused
        await self._wait_for_a_closing_session()
        if self.session is not None:
            return web.Response(status=409, text=IN_USE + "\n")
        websocket = web.WebSocketResponse(heartbeat=15)
        width, height = clamp_size(request.query.get("width"), request.query.get("height"))
        session = _AppProcess(self.app_argv, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                              close=websocket.close, download_manager=self.download_manager, debug=False)
        self.session = session  # taken before the first await: a second upgrade now sees "in use"
        try:
            await websocket.prepare(request)
            await session.start(width, height)
            self.sessions_started += 1
            log.info("session started (pid %s)", session.pid)
            try:
                await self._process_messages(websocket, session)
            finally:
                session.closing = True
                await session.stop()
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:  # noqa: BLE001 - one broken session never ends the server
            log.exception("session failed")
        finally:
            session.closing = True
            try:
                await session.stop()
            finally:
                self.session = None
                log.info("session ended")
        return websocket


def serve(app_args: Sequence[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          public_url: str | None = None) -> int:
    """Run the kiosk server until SIGINT/SIGTERM; returns the exit code."""
    os.environ.pop("TEXTUAL_DRIVER", None)
    KioskServer(app_args, host=host, port=port, public_url=public_url).serve()
    return 0
