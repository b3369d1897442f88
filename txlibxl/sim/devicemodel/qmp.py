"""
One QMP conversation, without I/O: :class:`QmpSession` takes the bytes
(and the file descriptors) a client sends and gives back the bytes QEMU
7.2 would answer.  The transports are :mod:`txlibxl.sim.devicemodel.server`.

The protocol (QEMU's ``docs/interop/qmp-spec``), as QEMU keeps it:

* on connection the server sends its greeting, ``{"QMP": {"version":
  ..., "capabilities": []}}``; until the client has sent
  ``qmp_capabilities`` every other command fails with
  ``CommandNotFound`` ("Expecting capabilities negotiation"), and after it
  ``qmp_capabilities`` itself does;
* a command is a JSON object ``{"execute": NAME, "arguments": {...},
  "id": ANY}``; the reply is ``{"return": VALUE, "id": ID}`` or ``{"error":
  {"class": CLASS, "desc": TEXT}, "id": ID}``, with the request's ``id``
  (any JSON value) echoed when there was one; every message ends with
  ``\\r\\n``;
* input that is not JSON, not an object, or not a well-formed command is
  answered with a ``GenericError`` (without ``id`` when it could not be
  read); the session goes on;
* a command QEMU does not know is ``CommandNotFound``;
* events (``{"event": NAME, "data": ..., "timestamp": ...}``) go to a
  client once it has negotiated;
* a file descriptor passed with ``SCM_RIGHTS`` belongs to the next
  command that takes one (``add-fd``); any others passed with it are
  closed when that command is done.

JSON objects may come split over many reads or several in one; input
that can never become JSON is skipped up to the end of its line (clients
send one command per line).  A client that sends more than
:data:`MAX_PENDING` bytes without completing an object is disconnected.
"""
from __future__ import annotations

import codecs
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from .commands import COMMANDS, QEMU_VERSION, Context
from .model import DeviceModel, QmpError

__all__ = ["MAX_PENDING", "QmpSession", "greeting"]

#: The most a client may send of one unfinished JSON value.
MAX_PENDING = 1 << 20

_EOM = b"\r\n"
_decoder = json.JSONDecoder()


def greeting() -> Dict[str, Any]:
    return {"QMP": {"version": json.loads(json.dumps(QEMU_VERSION)), "capabilities": []}}


def _encode(message: Dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(", ", ": ")).encode() + _EOM


class QmpSession:
    """
    The server's side of one QMP connection to C{model}.

    @param send: writes bytes to the client.
    @param close: ends the connection (after what was sent).
    @param silent: never answer (the stand-in's "hung" fault): no
        greeting, no reply, input dropped.
    @param quit: called once the reply to ``quit`` has gone out and the
        connection is closed.
    @param host_path: where a compiled-in path is on this host.
    """

    def __init__(self, model: DeviceModel, send: Callable[[bytes], Any], close: Callable[[], Any],
                 silent: bool = False, quit: Callable[[], Any] = lambda: None,
                 host_path: Callable[[str], str] = lambda path: path,
                 clock: Callable[[], float] = time.time,
                 commands: Optional[Dict[str, Callable[..., Any]]] = None) -> None:
        self.model = model
        self._send = send
        self._close = close
        self.silent = silent
        self._quit = quit
        self._clock = clock
        self.commands = COMMANDS if commands is None else commands
        self.negotiated = False
        self.closed = False
        self._gone = False
        self._text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._fds: List[int] = []
        self._quitting = False
        self._context = Context(model, self._take_fd, self, self._quit_requested, host_path)

    # -- transport side ---------------------------------------------------

    def start(self) -> None:
        """The client connected: greet it."""
        if not self.silent:
            self._send(_encode(greeting()))
            self.model.subscribe(self._event)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.silent:
            return
        self._text += self._utf8.decode(data)
        while not self.closed:
            text = self._text.lstrip()
            if not text:
                self._text = ""
                break
            try:
                message, end = _decoder.raw_decode(text)
            except json.JSONDecodeError as e:
                if self._incomplete(text, e):
                    self._text = text
                    if len(text) > MAX_PENDING:
                        self._reply({"error": _error("GenericError", "JSON parse error, input too large")})
                        self.close()
                    break
                newline = text.find("\n", e.pos)
                self._text = text[newline + 1:] if newline >= 0 else ""
                self._reply({"error": _error("GenericError", "JSON parse error, %s" % e.msg)})
                self._drop_fds()
                continue
            self._text = text[end:]
            self._handle(message)

    def fd_received(self, fd: int) -> None:
        """A descriptor came with the client's data (``SCM_RIGHTS``)."""
        if self.closed or self.silent:
            os.close(fd)
        else:
            self._fds.append(fd)

    def connection_lost(self) -> None:
        """The connection is gone (after what was sent went out)."""
        if self._gone:
            return
        self._gone = self.closed = True
        self._text = ""
        self._drop_fds()
        self.model.unsubscribe(self._event)
        self.model.client_gone(self)
        if self._quitting:
            self._quitting = False
            self._quit()

    def close(self) -> None:
        """End the connection once what was sent has gone out."""
        if not self.closed:
            self.closed = True
            self._drop_fds()
            self._close()

    # -- the protocol -------------------------------------------------------

    @staticmethod
    def _incomplete(text: str, e: json.JSONDecodeError) -> bool:
        """Whether more input could still make C{text} JSON."""
        if e.msg.startswith("Unterminated string"):
            return "\n" not in text[e.pos:]
        return e.pos >= len(text.rstrip())

    def _handle(self, message: Any) -> None:
        ident = message.get("id") if isinstance(message, dict) else None
        has_id = isinstance(message, dict) and "id" in message
        try:
            name, arguments = self._parse(message)
            if not self.negotiated and name != "qmp_capabilities":
                raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'", "CommandNotFound")
            if name == "qmp_capabilities":
                result = self._capabilities(arguments)
            else:
                handler = self.commands.get(name)
                if handler is None:
                    raise QmpError("The command %s has not been found" % name, "CommandNotFound")
                result = handler(self._context, arguments)
            reply: Dict[str, Any] = {"return": result}
        except QmpError as e:
            reply = {"error": _error(e.cls, e.desc)}
        finally:
            self._drop_fds()
        if has_id:
            reply["id"] = ident
        self._reply(reply)
        if self._quitting:
            # QEMU exits once the reply is out: the stand-in's quit hook
            # runs when the connection is gone (connection_lost).
            self._event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
            self.close()

    @staticmethod
    def _parse(message: Any) -> Any:
        if not isinstance(message, dict):
            raise QmpError("QMP input must be a JSON object")
        for key in message:
            if key not in ("execute", "arguments", "id"):
                raise QmpError("QMP input member '%s' is unexpected" % key)
        if "execute" not in message:
            raise QmpError("QMP input lacks member 'execute'")
        name = message["execute"]
        if not isinstance(name, str):
            raise QmpError("QMP input member 'execute' must be a string")
        arguments = message.get("arguments", {})
        if not isinstance(arguments, dict):
            raise QmpError("QMP input member 'arguments' must be an object")
        return name, arguments

    def _capabilities(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        if self.negotiated:
            raise QmpError("Capabilities negotiation is already complete, command ignored", "CommandNotFound")
        for key, value in arguments.items():
            if key != "enable":
                raise QmpError("Parameter '%s' is unexpected" % key)
            if not isinstance(value, list):
                raise QmpError("Invalid parameter type for 'enable', expected: array")
            for capability in value:
                raise QmpError("Capability '%s' not available" % (capability,))
        self.negotiated = True
        return {}

    def _quit_requested(self) -> None:
        self._quitting = True

    def _take_fd(self) -> Optional[int]:
        return self._fds.pop() if self._fds else None

    def _drop_fds(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _reply(self, message: Dict[str, Any]) -> None:
        if not self.closed:
            self._send(_encode(message))

    def _event(self, name: str, data: Dict[str, Any]) -> None:
        if not self.negotiated or self.closed:
            return
        now = self._clock()
        seconds = int(now)
        self._reply({"event": name, "data": data,
                     "timestamp": {"seconds": seconds, "microseconds": int((now - seconds) * 1e6)}})


def _error(cls: str, desc: str) -> Dict[str, str]:
    return {"class": cls, "desc": desc}
