"""`textual serve --command "cardrenew --demo"` (the browser kiosk): the page is served over HTTP on a free
loopback port, and a browser's websocket gets the logon pane of the real app.

Bounded: every wait has a timeout; the server is ended by its PID (and its process group, which
holds the app it started) whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, deadline: float) -> tuple[int, str]:
    """GET ``url``, retrying while the server starts, until ``deadline`` (monotonic)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last!r}")


async def logon_pane_over_websocket(port: int, timeout_s: float) -> str:
    """Connect as the browser does and collect the app's output until the logon pane shows."""
    seen = ""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30",
                                      timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            await ws.send_json(["resize", {"width": 100, "height": 30}])
            deadline = time.monotonic() + timeout_s
            while "Smartcard logon" not in seen or "Alex Example" not in seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    message = await ws.receive(timeout=left)
                except asyncio.TimeoutError:
                    break
                if message.type == aiohttp.WSMsgType.BINARY:
                    seen += message.data.decode("utf-8", "replace")
                elif message.type == aiohttp.WSMsgType.TEXT:
                    seen += message.data
                else:
                    break
    return seen


def test_textual_serve_serves_the_demo(tmp_path: Path) -> None:
    textual = BIN / "textual"
    assert textual.exists(), "textual-dev (test extras) provides the `textual` command"
    cardrenew = BIN / "cardrenew"
    command = f"{shlex.quote(str(cardrenew))} --demo" if cardrenew.exists() else \
        f"{shlex.quote(sys.executable)} -m tui --demo"
    port = free_port()
    env = dict(os.environ)
    for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    env.pop("CARDRENEW_CONFIG", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(textual), "serve", "--command", "--host", "127.0.0.1", "--port", str(port), command],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status, page = fetch(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
        assert status == 200
        assert "<html" in page.lower() and f"127.0.0.1:{port}" in page  # the page points the browser at our /ws
        output = asyncio.run(asyncio.wait_for(logon_pane_over_websocket(port, timeout_s=30), timeout=45))
        assert "Smartcard logon" in output and "Alex Example" in output, output[-2000:]
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        try:  # the app the server started for the websocket runs in the server's process group
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        log.close()
