"""Runtime control of a running honeypot: the `siptrap ctl` commands and their server.

The same commands come over a unix socket in the data directory (owner-only, 0600) and
over `POST /api/v1/control` with the admin token. A command is a list of words; a bad one
raises ControlError (a clear message, nothing changed). Each change emits
`sensor.control` (who, what, result).

Protocol on the socket: one JSON line `{"command": ["calls", "list"]}` in, one JSON line
`{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}` out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from ..analysis.rules import RuleError
from ..endpoint.extensions import BEHAVIOURS, MEDIA_MODES, Extension
from ..endpoint.uas import Endpoint
from ..events.bus import EventBus, Sink
from ..events.record import Event
from ..settings import ConfigError

SOCKET_NAME = "control.sock"
MAX_LINE = 64 * 1024


class ControlError(ValueError):
    """A command that is wrong or cannot be done; nothing was changed."""


class Switch:
    """A sink that can be turned off and on at runtime (console lines, alert e-mail)."""

    def __init__(self, sink: Sink, enabled: bool = True) -> None:
        self.sink = sink
        self.name = sink.name
        self.enabled = enabled

    def open(self) -> None:
        self.sink.open()

    def write(self, events: list[Event]) -> None:
        if self.enabled:
            self.sink.write(events)

    def close(self) -> None:
        self.sink.close()


class ControlTarget(Protocol):
    """What the controller needs of the running honeypot (app.Honeypot)."""

    config: Any
    data_dir: Path
    started: float
    endpoint: Endpoint
    bus: EventBus

    @property
    def mode(self) -> str: ...

    def set_mode(self, mode: str, who: str) -> str: ...

    def set_personality(self, name: str) -> str: ...

    def listening(self) -> list[str]: ...


# Calls that count as in progress: ringing or answered. An INVITE that was challenged
# (401/407) and never authenticated is not a call yet, nor one still being routed.
ACTIVE_STATES = frozenset({"ringing", "answered"})


def active_calls(endpoint: Endpoint) -> list[Any]:
    return [c for c in endpoint.calls.calls.values() if c.state in ACTIVE_STATES]


def _switch(bus: EventBus, name: str) -> Switch | None:
    for runner in bus.runners:
        if isinstance(runner.sink, Switch) and runner.sink.name == name:
            return runner.sink
    return None


def _words(args: list[str], count: int, usage: str) -> None:
    if len(args) != count:
        raise ControlError(f"usage: {usage}")


class Controller:
    def __init__(self, target: ControlTarget, reload_rules: Callable[[], int] | None) -> None:
        self.t = target
        self.reload_rules = reload_rules

    # -- entry ------------------------------------------------------------------------
    def run(self, command: list[str], who: str) -> dict[str, Any]:
        """Do one command; a change emits sensor.control."""
        if not command:
            raise ControlError("no command: " + ", ".join(COMMANDS))
        name, args = command[0], command[1:]
        handler = COMMANDS.get(name)
        if handler is None:
            raise ControlError(f"unknown command {name[:40]!r}: one of {', '.join(COMMANDS)}")
        result, changed = handler(self, args)
        if changed:
            self.record(who, command, result)
        return result

    async def run_async(self, command: list[str], who: str) -> dict[str, Any]:
        """run, with the commands that only read or write files and the database (and
        touch nothing of the endpoint) in a worker thread, off the event loop."""
        if command and command[0] in OFF_LOOP:
            return await asyncio.to_thread(self.run, command, who)
        return self.run(command, who)

    def record(self, who: str, command: list[str], result: dict[str, Any]) -> None:
        """The event `sensor.control`: who changed what, and the answer."""
        self.t.bus.emit(
            Event(
                "sensor.control",
                time.time(),
                self.t.config.sensor.name,
                None,
                {"who": who, "command": " ".join(command)[:500], "result": result},
            )
        )

    # -- read-only --------------------------------------------------------------------
    def status(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 0, "status")
        e = self.t.endpoint
        console = _switch(self.t.bus, "console")
        mail = _switch(self.t.bus, "alert-mail")
        return {
            "sensor": self.t.config.sensor.name,
            "mode": self.t.mode,
            "uptime": round(time.time() - self.t.started, 3),
            "personality": e.p.name,
            "listen": self.t.listening(),
            "data_dir": str(self.t.data_dir),
            "console": "verbose" if console and console.enabled else "quiet",
            "email": "on" if mail and mail.enabled else ("off" if mail else "not configured"),
            "extensions": len(e.plan),
            "active_calls": len(self._live_calls()),
        }, False

    def stats(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 0, "stats")
        e = self.t.endpoint
        bus = self.t.bus
        return {
            "requests": e.requests,
            "sources": len(e.guard),
            "registrations": len(e.registrar),
            "calls": len(e.calls.calls),
            "active_calls": len(self._live_calls()),
            "shed": e.guard.shed,
            "dropped_events": bus.dropped,
            "sinks": {
                r.sink.name: {"written": r.written, "queued": len(r._items), "dropped": r.dropped}
                for r in bus.runners
            },
        }, False

    # -- changes ----------------------------------------------------------------------
    def mode(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 1, "mode passive|active|CUSTOM")
        try:
            previous = self.t.set_mode(args[0], "control")
        except ValueError as exc:  # not passive, active, nor a mode of the rules
            raise ControlError(str(exc)) from None
        return {"mode": self.t.mode, "previous": previous}, True

    def console(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 1, "console verbose|quiet")
        if args[0] not in ("verbose", "quiet"):
            raise ControlError("usage: console verbose|quiet")
        switch = _switch(self.t.bus, "console")
        if switch is None:
            raise ControlError("this honeypot has no console output")
        switch.enabled = args[0] == "verbose"
        return {"console": args[0]}, True

    def email(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 1, "email on|off")
        if args[0] not in ("on", "off"):
            raise ControlError("usage: email on|off")
        switch = _switch(self.t.bus, "alert-mail")
        if switch is None:
            raise ControlError("no alert e-mail configured ([alerts] smtp_host)")
        switch.enabled = args[0] == "on"
        return {"email": args[0]}, True

    def _live_calls(self) -> list[Any]:
        return active_calls(self.t.endpoint)

    def calls(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        if args == ["list"]:
            return {
                "calls": [
                    {
                        "call_id": c.call_id,
                        "src_ip": c.peer.src_ip,
                        "called": c.called,
                        "state": c.state,
                        "started": round(c.started, 3),
                    }
                    for c in self._live_calls()
                ]
            }, False
        if len(args) == 2 and args[0] == "hangup":
            now = time.time()
            manager = self.t.endpoint.calls
            ids = [c.call_id for c in self._live_calls()] if args[1] == "all" else [args[1]]
            ended = [i for i in ids if manager.hang_up(i, now)]
            if args[1] != "all" and not ended:
                raise ControlError(f"no call {args[1][:80]!r} in progress")
            return {"hung_up": ended}, True
        raise ControlError("usage: calls list | calls hangup ID | calls hangup all")

    def extensions(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        plan = self.t.endpoint.plan
        if args == ["list"]:
            return {"extensions": [_ext_dict(plan.get(u)) for u in plan.users()]}, False
        if len(args) >= 2 and args[0] in ("add", "set", "remove"):
            user = args[1]
            current = plan.get(user)
            if args[0] == "remove":
                _words(args, 2, "extensions remove USER")
                if not plan.remove(user):
                    raise ControlError(f"no extension {user[:40]!r}")
                return {"removed": user}, True
            if args[0] == "add" and current is not None:
                raise ControlError(f"extension {user!r} exists: use extensions set")
            if args[0] == "set" and current is None:
                raise ControlError(f"no extension {user[:40]!r}: use extensions add")
            ext = _extension(current or Extension(user=user), args[2:])
            try:
                plan.put(ext)
            except ConfigError as exc:
                raise ControlError(str(exc)) from None
            return {"extension": _ext_dict(ext)}, True
        raise ControlError(
            "usage: extensions list | extensions add USER [KEY=VALUE ...] | "
            "extensions set USER KEY=VALUE ... | extensions remove USER"
        )

    def personality(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 1, "personality NAME")
        try:
            previous = self.t.set_personality(args[0])
        except ValueError as exc:  # neither built in nor a [personalities.NAME]
            raise ControlError(str(exc)) from None
        return {"personality": self.t.endpoint.p.name, "previous": previous}, True

    def rules(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        _words(args, 1, "rules reload")
        if args[0] != "reload":
            raise ControlError("usage: rules reload")
        if self.reload_rules is None:
            raise ControlError("analysis is off: no rules to reload")
        try:
            count = self.reload_rules()
        except (RuleError, OSError) as exc:  # a bad rule file: the old rules stay
            raise ControlError(f"rules not reloaded: {exc}") from None
        return {"rules": count}, True

    def blocks(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        from ..actions.lift import block_rows, lift_block  # not for every `siptrap ctl`

        if args == ["list"]:
            return {"blocks": block_rows(self.t.data_dir)}, False
        if len(args) != 2 or args[0] != "lift":
            raise ControlError("usage: blocks list | blocks lift ADDR")
        try:
            lifted = lift_block(self.t.data_dir, args[1], self.t.config.actions)
        except ValueError as exc:  # not an address
            raise ControlError(str(exc)) from None
        errors = list(lifted.errors)
        return {"src_ip": lifted.src_ip, "lifted": lifted.known, "errors": errors}, True

    def clean(self, args: list[str]) -> tuple[dict[str, Any], bool]:
        from .cleaning import clean

        if (
            len(args) != 3
            or args[1] != "--before"
            or args[0] not in ("alerts", "recordings", "events")
        ):
            raise ControlError("usage: clean alerts|recordings|events --before DATE")
        try:
            result = clean(self.t.data_dir, args[0], args[2])
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        return result, True


COMMANDS: dict[str, Callable[[Controller, list[str]], tuple[dict[str, Any], bool]]] = {
    "status": Controller.status,
    "stats": Controller.stats,
    "mode": Controller.mode,
    "console": Controller.console,
    "email": Controller.email,
    "calls": Controller.calls,
    "extensions": Controller.extensions,
    "personality": Controller.personality,
    "rules": Controller.rules,
    "clean": Controller.clean,
    "blocks": Controller.blocks,
}
OFF_LOOP = frozenset({"blocks", "clean"})

_EXT_KEYS = {f.name: f.type for f in dataclass_fields(Extension) if f.name != "user"}


def _ext_dict(ext: Extension | None) -> dict[str, Any]:
    if ext is None:
        return {}
    out = {f.name: getattr(ext, f.name) for f in dataclass_fields(Extension)}
    out["password"] = "set" if ext.password else None  # never echo a configured password
    return out


def _extension(base: Extension, pairs: list[str]) -> Extension:
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in _EXT_KEYS:
            raise ControlError(f"{pair[:60]!r}: KEY=VALUE with KEY one of {', '.join(_EXT_KEYS)}")
        if key in ("answer_after", "ring_timeout", "call_duration"):
            try:
                number = float(value)
            except ValueError:
                raise ControlError(f"{key}: a number of seconds") from None
            if not 0 <= number <= 86400:
                raise ControlError(f"{key}: 0 to 86400 seconds")
            changes[key] = number
        elif key == "behaviour" and value not in BEHAVIOURS:
            raise ControlError(f"behaviour: one of {', '.join(BEHAVIOURS)}")
        elif key == "media" and value not in MEDIA_MODES:
            raise ControlError(f"media: one of {', '.join(MEDIA_MODES)}")
        elif key == "media_file":
            raise ControlError("media_file: set it in the configuration (it is checked at start)")
        else:
            changes[key] = value or None
    ext = replace(base, **changes)
    if ext.behaviour == "redirect" and not ext.redirect_to:
        raise ControlError("behaviour redirect needs redirect_to=URI")
    return ext


# -- the unix socket ----------------------------------------------------------------------
def _peer_uid(sock: socket.socket | None) -> str:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return "ctl"
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "ctl"
    pid, uid, _ = struct.unpack("3i", creds)
    return f"ctl uid {uid} pid {pid}"


class ControlServer:
    """The unix socket `DATA/control.sock` (mode 0600) serving Controller.run."""

    def __init__(self, path: Path, controller: Controller) -> None:
        self.path = path
        self.controller = controller
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        who = _peer_uid(writer.get_extra_info("socket"))
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            reply = await self.answer(line, who)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def answer(self, line: bytes, who: str) -> dict[str, Any]:
        if len(line) > MAX_LINE:
            return {"ok": False, "error": "request too long"}
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        command = request.get("command") if isinstance(request, dict) else None
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            return {"ok": False, "error": 'expected {"command": ["word", ...]}'}
        via = request.get("via")
        if isinstance(via, str) and via:  # `siptrap web` passing on an API request
            who = f"{who} via {via[:80]}"
        try:
            return {"ok": True, "result": await self.controller.run_async(command, who)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}


def send_command(
    path: Path, command: list[str], timeout: float = 15.0, via: str = ""
) -> dict[str, Any]:
    """The client side (siptrap ctl, and siptrap web for the API): one request, one
    answer. `via`: on whose behalf (recorded in sensor.control's `who`)."""
    request: dict[str, Any] = {"command": command}
    if via:
        request["via"] = via
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data or b"{}")
    return reply


class NoHoneypot(OSError):
    """No honeypot answers on the data directory's control socket."""


def socket_control(
    data_dir: Path,
) -> Callable[[list[str], str], Coroutine[Any, Any, dict[str, Any]]]:
    """For `siptrap web`: control commands passed on to the honeypot running on the data
    directory, over its control socket (ControlError for a bad command, NoHoneypot when
    none runs there)."""
    path = data_dir / SOCKET_NAME

    async def control(command: list[str], who: str) -> dict[str, Any]:
        try:
            reply = await asyncio.to_thread(send_command, path, command, 15.0, who)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoHoneypot(f"no running honeypot at {path}") from exc
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "no answer")))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    return control


def rules_reloader(
    bus: EventBus, config: Any, on_rules: Callable[[Any], None] | None = None
) -> Callable[[], int] | None:
    """`rules reload`: the configured rule files read again and a new engine swapped in
    (the old one finishes first, so its open alerts are written). A bad file raises and
    the running rules stay. `on_rules` is given the new rule set first (the honeypot
    takes its modes); when it raises, nothing changes."""
    from ..analysis.engine import AnalysisEngine
    from ..analysis.live import AnalysisSink, rules_in_force

    sink = next((r.sink for r in bus.runners if isinstance(r.sink, AnalysisSink)), None)
    if sink is None:
        return None
    analysis = sink

    def reload() -> int:
        rules = rules_in_force(config.analysis.rules)
        if on_rules is not None:
            on_rules(rules)
        engine = AnalysisEngine(
            rules,
            config.engine_settings(),
            run_command=analysis.runner,
            recon=analysis.engine.recon,  # active mode's board, asked about every INVITE
        )
        with analysis.lock:
            analysis.engine.finish(time.time())
            analysis._flush()
            analysis.engine = engine
        return len(rules.rules)

    return reload
