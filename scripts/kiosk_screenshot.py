#!/usr/bin/env python3
"""Screenshot of ``cardrenew serve --demo`` in headless Chromium: ``screenshots/17-browser-kiosk.png``.

Usage: ``python scripts/kiosk_screenshot.py [OUTPUT.png]``. Needs Debian's ``chromium``
(scripts/setup.sh installs it). The server runs on a free loopback port with the demo CA in a
temporary XDG directory; Chromium runs with a fresh profile and no background traffic, and is
driven over the DevTools protocol (aiohttp) until the logon pane shows the holder's name. Also used
by tests/tui/test_serve.py to check that the page works in a real browser. Every wait is bounded;
both processes are ended by PID.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "screenshots" / "17-browser-kiosk.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1200,760"]
WAIT_FOR = ("Smartcard logon", "Alex Example")


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target; it keeps what the page's
    websocket received (``Network.webSocketFrameReceived``): the app's terminal output."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.received = ""

    def _event(self, message: dict[str, Any]) -> None:
        if message.get("method") == "Network.webSocketFrameReceived":
            frame = message["params"]["response"]
            data = frame.get("payloadData", "")
            if frame.get("opcode") == 2:  # binary: the app's terminal bytes, base64
                data = base64.b64decode(data).decode("utf-8", "replace")
            self.received += data

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.ws.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    async def pump(self, seconds: float) -> None:
        """Take in events for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self._event(await self.ws.receive_json(timeout=left))
            except asyncio.TimeoutError:
                return


async def shoot(chromium: str, url: str, out: Path, timeout_s: float) -> str:
    """Open ``url`` in headless Chromium, wait for the logon pane, save a PNG; returns the page text."""
    profile = Path(tempfile.mkdtemp(prefix="cardrenew-chromium-"))
    debug_port = free_port()
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--remote-debugging-port={debug_port}", "--remote-allow-origins=*", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        wait_http(f"http://127.0.0.1:{debug_port}/json/version", timeout_s)
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{debug_port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t.get("type") == "page")
            async with client.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024) as ws:
                tools = DevTools(ws)
                await tools.call("Page.enable")
                await tools.call("Network.enable")
                await tools.call("Page.navigate", url=url)
                while not all(w in tools.received for w in WAIT_FOR):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the logon pane did not reach the browser; it received: "
                                           f"{tools.received[-500:]!r}")
                    await tools.pump(0.5)
                await tools.pump(1.5)  # let the last frame paint
                text = tools.received
                shot = await tools.call("Page.captureScreenshot", format="png")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
                return text
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def main(out: Path = DEFAULT_OUT, timeout_s: float = 90.0) -> str:
    chromium = chromium_binary()
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh does it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cardrenew-kiosk-") as home:
        env = dict(os.environ)
        for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
            Path(home, name).mkdir()
            env[name] = str(Path(home, name))
        env.pop("CARDRENEW_CONFIG", None)
        server = subprocess.Popen([sys.executable, "-m", "tui", "serve", "--demo", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/static/css/xterm.css", 30)
            text = asyncio.run(asyncio.wait_for(shoot(chromium, f"http://127.0.0.1:{port}/", out, timeout_s),
                                                timeout_s + 30))
        finally:
            try:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(server.pid, signal.SIGKILL)
    return text


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    main(target)
    print(f"Saved {target} (the logon pane of `cardrenew serve --demo` in headless Chromium)")
