"""``cardrenew serve`` (the browser kiosk, issue 12 item 6): the real server on a free loopback
port, driven by an aiohttp client as a browser — and as a foreign web page — would drive it.

Bounded: every wait has a timeout; the server is ended by its PID (and its process group, which
holds the app it started) whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.serve import KioskServer, is_loopback, origin_of

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, deadline: float, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """GET ``url``, retrying while the server starts, until ``deadline`` (monotonic)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
                return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last!r}")


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the sessions a server started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port
        self.origin = f"http://127.0.0.1:{port}"
        self.ws_url = f"http://127.0.0.1:{port}/ws?width=100&height=30"

    def sessions(self) -> list[int]:
        return children(self.proc.pid)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    env = dict(os.environ)
    for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    env.pop("CARDRENEW_CONFIG", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tui", "serve", "--demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        fetch(f"http://127.0.0.1:{port}/static/css/xterm.css", time.monotonic() + 30)
        yield Served(proc, port)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        try:  # anything the server started is in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


async def read_screen(ws: aiohttp.ClientWebSocketResponse, until: tuple[str, ...], timeout_s: float) -> str:
    """Collect the app's output until every string in ``until`` was seen (or the time is up)."""
    seen = ""
    deadline = time.monotonic() + timeout_s
    while not all(text in seen for text in until):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.BINARY:
            seen += message.data.decode("utf-8", "replace")
        elif message.type != aiohttp.WSMsgType.TEXT:
            break
    return seen


LOGON = ("Smartcard logon", "Alex Example")


def test_the_page_works_from_its_own_origin(served: Served) -> None:
    status, headers, page = fetch(served.origin + "/", time.monotonic() + 30)
    assert status == 200 and "<html" in page.lower()
    assert f"ws://127.0.0.1:{served.port}/ws" in page  # the page points the browser at our /ws
    assert headers.get("X-Frame-Options") == "DENY"  # no other site may frame it (clickjacking)

    async def session() -> str:
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(served.ws_url, headers={"Origin": served.origin}) as ws:
                await ws.send_json(["resize", {"width": 100, "height": 30}])
                return await read_screen(ws, LOGON, 45)

    output = asyncio.run(asyncio.wait_for(session(), 60))
    assert all(text in output for text in LOGON), output[-2000:]
    assert served.proc.poll() is None


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"}, {},
                                     {"Origin": "http://rebound.example:{port}", "Host": "rebound.example:{port}"},
                                     {"Origin": "http://127.0.0.1:{port}.evil.com"}, {"Origin": "http://127.0.0.1:99999"},
                                     {"Origin": "http://[::1"}],
                         ids=["foreign-site", "null-origin", "other-port", "no-origin", "dns-rebinding",
                              "port-then-domain", "port-out-of-range", "unclosed-bracket"])
def test_a_foreign_origin_is_refused_and_starts_nothing(served: Served, headers: dict[str, str]) -> None:
    """Issue 12 item 6: under `textual serve` a page from another site opened the websocket, read
    the holder's name and typed PINs. Now the upgrade is refused before any process starts."""
    headers = {k: v.format(port=served.port) for k, v in headers.items()}

    async def attempt() -> int:
        async with aiohttp.ClientSession() as client:
            try:
                async with client.ws_connect(served.ws_url, headers=headers) as ws:
                    await ws.send_json(["stdin", "654321\r"])  # what an attacker would type
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(asyncio.wait_for(attempt(), 30)) == 403
    time.sleep(0.5)
    assert served.sessions() == []  # no cardrenew was started for it


def test_one_live_session_a_second_browser_is_told_in_use(served: Served) -> None:
    async def scenario() -> tuple[int, int, str, list[int], str]:
        async with aiohttp.ClientSession() as client:
            first = await client.ws_connect(served.ws_url, headers={"Origin": served.origin})
            await first.send_json(["resize", {"width": 100, "height": 30}])
            screen = await read_screen(first, LOGON, 45)
            assert all(text in screen for text in LOGON), screen[-2000:]
            try:
                async with client.ws_connect(served.ws_url, headers={"Origin": served.origin}):
                    second = 101
            except aiohttp.WSServerHandshakeError as error:
                second = error.status
            async with client.get(served.origin + "/") as response:
                page_status, page = response.status, await response.text()
            during = served.sessions()
            await first.close()
            # At once, as a kiosk reloading its page does: the closing session is waited for, and
            # the new one gets the logon pane (not "in use").
            async with client.ws_connect(served.ws_url, headers={"Origin": served.origin}) as again:
                await again.send_json(["resize", {"width": 100, "height": 30}])
                later = await read_screen(again, LOGON, 45)
            return second, page_status, page, during, later

    second, page_status, page, during, later = asyncio.run(asyncio.wait_for(scenario(), 150))
    assert second == 409
    assert page_status == 409 and "in use" in page
    assert len(during) == 1  # one process for one session (no shell in between, no second app)
    assert all(text in later for text in LOGON)


def test_origins_allowed_by_default_and_behind_a_proxy() -> None:
    local = KioskServer(["--demo"], host="127.0.0.1", port=8000)
    assert local.allowed_origins == {"http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"}
    proxied = KioskServer(["--kiosk"], host="127.0.0.1", port=8000, public_url="https://kiosk.example.org/")
    assert proxied.allowed_origins == {"https://kiosk.example.org"}  # a loopback page may not, then
    assert "kiosk.example.org" in proxied.allowed_hosts and "127.0.0.1:8000" in proxied.allowed_hosts
    assert origin_of("HTTP://LocalHost:80/x") == "http://localhost"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


def test_the_logon_pane_shows_in_headless_chromium(tmp_path: Path) -> None:
    """The page works in a real browser from its own origin: Chromium (Debian ``chromium``,
    installed by scripts/setup.sh) loads it, its websocket gets the logon pane, and a screenshot is
    taken (the README's screenshots/17-browser-kiosk.png comes from the same script)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import kiosk_screenshot
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    if kiosk_screenshot.chromium_binary() is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    out = tmp_path / "kiosk.png"
    received = kiosk_screenshot.main(out, timeout_s=90)
    assert all(text in received for text in LOGON)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.stat().st_size > 10_000


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(origin=st.one_of(st.text(), st.builds(lambda tail: "http://127.0.0.1:" + tail, st.text()),
                        st.builds(lambda tail: "http://[" + tail, st.text())))
def test_any_origin_header_is_allowed_or_refused_403_never_an_error(origin: str) -> None:
    """Break-it: a malformed Origin (``http://127.0.0.1:8765.evil.com``) raised ValueError: HTTP 500."""
    from aiohttp.test_utils import make_mocked_request
    server = KioskServer(["--demo"], host="127.0.0.1", port=8765)
    request = make_mocked_request("GET", "/ws", headers={"Host": "127.0.0.1:8765", "Origin": origin})
    answer = server.refusal(request)
    if answer is None:
        assert origin_of(origin) in server.allowed_origins
    else:
        assert answer.status == 403


@pytest.mark.parametrize("how", ["query", "resize"])
def test_a_huge_terminal_size_is_clamped_and_the_page_still_draws(served: Served, how: str) -> None:
    """Break-it finding 9: ``/ws?width=20000&height=20000`` (or a ``resize`` message of that size)
    made the session's app build a 400-million-cell screen: 185 MB, and it never drew. The size is
    clamped (500×200 at most), so the logon pane is drawn, and the session answers keys."""
    url = served.ws_url.replace("width=100&height=30", "width=20000&height=20000") if how == "query" else served.ws_url

    async def session() -> str:
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(url, headers={"Origin": served.origin}) as ws:
                if how == "resize":
                    await ws.send_json(["resize", {"width": 100, "height": 30}])
                    first = await read_screen(ws, LOGON, 45)
                    assert all(text in first for text in LOGON), first[-2000:]
                await ws.send_json(["resize", {"width": 20000, "height": 20000}])
                return await read_screen(ws, LOGON, 45)

    output = asyncio.run(asyncio.wait_for(session(), 120))
    assert all(text in output for text in LOGON), output[-2000:]


def test_clamp_size_bounds_whatever_a_browser_sends() -> None:
    from tui.serve import MAX_SIZE, MIN_SIZE, clamp_size
    assert MIN_SIZE == (20, 5) and MAX_SIZE == (500, 200)
    assert clamp_size(20000, 20000) == (500, 200)
    assert clamp_size("20000", "-3") == (500, 5)
    assert clamp_size(0, 1) == (20, 5)
    assert clamp_size(100, 30) == (100, 30)
    assert clamp_size("100", " 30") == (100, 30)
    for bad in (None, 1e9, "1e9", [1], True, "9" * 400, {"a": 1}):
        assert clamp_size(bad, bad, (90, 40)) == (90, 40)


@pytest.mark.parametrize("junk", ['["stdin", "\\ud800"]', "not json", '["resize", {"width": "x"}]', "[]", "{}",
                                  '["stdin", 5]', '[1, 2]', "[" * 5000 + "]" * 5000],
                         ids=["lone-surrogate", "not-json", "resize-junk", "empty-list", "object", "stdin-number",
                              "kind-number", "deeply-nested"])
def test_a_malformed_message_is_dropped_and_the_session_goes_on(served: Served, junk: str) -> None:
    """Tester F-9: one malformed websocket message ended the session (a traceback in the server
    log, the app process gone). Now it is dropped and the same session still answers."""
    async def scenario() -> tuple[str, str]:
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(served.ws_url, headers={"Origin": served.origin}) as ws:
                await ws.send_json(["resize", {"width": 100, "height": 30}])
                first = await read_screen(ws, LOGON, 45)
                await ws.send_str(junk)
                await ws.send_json(["ping", "still-there"])
                pong = ""
                deadline = time.monotonic() + 20
                while "still-there" not in pong and time.monotonic() < deadline:
                    message = await ws.receive(timeout=20)
                    if message.type == aiohttp.WSMsgType.TEXT:
                        pong += message.data
                    elif message.type != aiohttp.WSMsgType.BINARY:
                        break
                return first, pong

    first, pong = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert all(text in first for text in LOGON)
    assert "still-there" in pong  # the session answered after the junk
