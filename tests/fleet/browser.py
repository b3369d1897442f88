"""
Debian's headless Chromium, driven through the DevTools protocol over a
pipe (``--remote-debugging-pipe``: commands on its fd 3, replies on its fd
4, each a JSON object ended by a NUL byte): :class:`Browser`.  Nothing is
downloaded; the profile is a temporary directory.  Test support code.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from typing import Any, Dict, Optional

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol

__all__ = ["Browser", "chromium"]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-pipe"]


def chromium() -> Optional[str]:
    """The Chromium binary, or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe(ProcessProtocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: Dict[int, defer.Deferred] = {}
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd != 4:
            self.output = (self.output + data)[-20000:]
            return
        self.buffer += data
        while b"\0" in self.buffer:
            message, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(message)
            d = self.waiting.pop(reply.get("id"), None)
            if d is not None:
                if "error" in reply:
                    d.errback(RuntimeError(f"DevTools: {reply['error']}"))
                else:
                    d.callback(reply.get("result", {}))

    def processEnded(self, reason: Any) -> None:
        for d in self.waiting.values():
            d.errback(RuntimeError("chromium ended: " + self.output.decode(errors="replace")[-2000:]))
        self.waiting = {}
        self.ended.callback(None)


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self._pipe = _Pipe()
        self._ids = 0
        self._session: Optional[str] = None

    async def start(self) -> "Browser":
        binary = chromium()
        args = [binary] + FLAGS + [f"--user-data-dir={self.profile}", "about:blank"]
        os.makedirs(self.profile, exist_ok=True)
        self._process = reactor.spawnProcess(self._pipe, binary, args, env=dict(os.environ),
                                             childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"})
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self._session = attached["sessionId"]
        await self.send("Page.enable")
        return self

    def send(self, method: str, **params: Any) -> defer.Deferred:
        """One DevTools command (on the page once attached); fires with its result."""
        self._ids += 1
        message: Dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        d: defer.Deferred = defer.Deferred()
        self._pipe.waiting[self._ids] = d
        self._process.writeToChild(3, json.dumps(message).encode() + b"\0")
        return d

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Until C{expression} is truthy in the page; its value."""
        value = None
        for _ in range(int(timeout / 0.2)):
            value = await self.evaluate(expression)
            if value:
                return value
            await task.deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"the page never had {expression} (last: {value!r})")

    async def screenshot(self, path: str) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    async def stop(self) -> None:
        if not self._pipe.ended.called:
            try:
                await defer.gatherResults([self.send("Browser.close")], consumeErrors=True)
            except Exception:
                pass
            timer = reactor.callLater(5, lambda: self._pipe.ended.called or self._process.signalProcess("KILL"))
            await self._pipe.ended
            if timer.active():
                timer.cancel()
        shutil.rmtree(self.profile, ignore_errors=True)
