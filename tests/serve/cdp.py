"""A minimal Chrome DevTools Protocol client for the browser tests: headless Debian Chromium, driven over its
DevTools websocket with aiohttp (a Ray dependency), no browser download and no driver package.

    async with Chromium.launch(tmp_dir) as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.set_files("#file", [path])
        value = await page.eval("document.title")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Chromium:
    def __init__(self, proc: subprocess.Popen, ws, session):
        self.proc, self.ws, self.session = proc, ws, session
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, user_data_dir: str, timeout: float = 30.0, extra_flags: tuple[str, ...] = ()):
        import aiohttp

        exe = chromium_path()
        if exe is None:
            raise CDPError("chromium is not installed")
        os.makedirs(user_data_dir, exist_ok=True)
        port_file = os.path.join(user_data_dir, "DevToolsActivePort")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(port_file)  # a previous browser's port: wait for this one's
        proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while len(_read(port_file).split()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise CDPError(f"chromium did not start (exit code {proc.poll()})")
            await asyncio.sleep(0.1)
        port, path = _read(port_file).split()[:2]
        session = aiohttp.ClientSession()
        browser = None
        try:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
            browser = cls(proc, ws, session)
            yield browser
        finally:
            if browser is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.send("Browser.close"), 5)
                browser._reader.cancel()
                await browser.ws.close()
            await session.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, params: dict | None = None, session_id: str | None = None,
                   timeout: float = 60.0) -> dict:  # fmt: skip
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        await self.ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "DOM"):
            await page.send(f"{domain}.enable")
        return page


class Page:
    def __init__(self, browser: Chromium, session_id: str):
        self.browser, self.session_id = browser, session_id

    async def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        return await self.browser.send(method, params, self.session_id, timeout)

    async def eval(self, expression: str) -> Any:
        """The value of a JS expression (promises awaited), JSON-serialisable."""
        out = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in out:
            raise CDPError(f"JS error: {out['exceptionDetails'].get('exception', {}).get('description')}")
        return out["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise CDPError(f"timed out waiting for {expression!r}")

    async def goto(self, url: str, timeout: float = 60.0) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", timeout)

    async def set_files(self, selector: str, paths: list[str]) -> None:
        """Choose files in an ``<input type=file>`` as a user would (fires its change event)."""
        root = await self.send("DOM.getDocument")
        node = await self.send("DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": selector})
        if not node.get("nodeId"):
            raise CDPError(f"no element {selector!r}")
        files = [os.path.abspath(p) for p in paths]
        await self.send("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": files})

    async def screenshot(self, path: str) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
