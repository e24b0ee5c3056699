"""The event catalogue cannot drift: every id the code emits is catalogued, every
catalogued id is documented in the README with the same fields, and every field an
emitted event carries is listed in its spec (checked on the events themselves)."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import test_endpoint
from siptrap.app import Honeypot
from siptrap.config import config_from_dict
from siptrap.events.catalogue import CATALOGUE, COMMON_FIELDS
from siptrap.events.record import Event
from siptrap.outputs.console import NOTABLE

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "siptrap"
AREAS = sorted({event_id.split(".")[0] for event_id in CATALOGUE})
EVENT_ID = re.compile(rf"({'|'.join(AREAS)})(\.[a-z_]+){{1,3}}")
EMITTERS = {"Event", "_emit", "_event", "emit_event", "_emit_binding", "emit"}


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def ids_in_source() -> dict[str, set[str]]:
    """Event-id-shaped string literals passed to an emitting call, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _called_name(node) not in EMITTERS:
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if EVENT_ID.fullmatch(arg.value):
                        found.setdefault(arg.value, set()).add(str(path.relative_to(ROOT)))
    return found


def id_literals_anywhere() -> set[str]:
    """Every string literal in the source that looks like an event id (catches ids kept
    in tables or variables before they reach an emitting call)."""
    out = set()
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if EVENT_ID.fullmatch(node.value):
                    out.add(node.value)
    return out


def readme_catalogue() -> dict[str, tuple[str, ...]]:
    """The README's "Event catalogue" table: id -> fields listed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Event catalogue", 1)[1].split("\n#", 1)[0]
    rows: dict[str, tuple[str, ...]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        fields = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
        rows[cells[0].strip("`")] = fields
    return rows


def test_the_source_scan_finds_the_emitting_calls() -> None:
    found = ids_in_source()
    # The scan itself works: ids emitted by the endpoint, the calls and the app.
    for known in (
        "sip.request.received",
        "sip.call.started",
        "sensor.started",
        "transport.connection.opened",
        "sip.register.removed",
    ):
        assert known in found, known
    assert len(found) >= 15


def test_every_event_id_in_the_code_is_in_the_catalogue() -> None:
    missing = {i: sorted(where) for i, where in ids_in_source().items() if i not in CATALOGUE}
    assert not missing
    stray = id_literals_anywhere() - set(CATALOGUE)
    assert not stray, stray


def test_every_catalogued_event_is_emitted_somewhere() -> None:
    unused = set(CATALOGUE) - set(ids_in_source())
    assert not unused, unused


def test_console_notable_events_exist() -> None:
    assert set(NOTABLE) <= set(CATALOGUE)


def test_every_catalogued_event_is_documented_with_its_fields() -> None:
    documented = readme_catalogue()
    assert set(documented) == set(CATALOGUE)
    for event_id, spec in CATALOGUE.items():
        assert documented[event_id] == spec.fields, event_id
        assert spec.description and spec.id == event_id
        # An alert names its source address even when no single peer (port) is known.
        allowed = {"src_ip"} if event_id == "analysis.alert.raised" else set()
        assert not (set(spec.fields) & set(COMMON_FIELDS)) - allowed, event_id


def test_event_record_refuses_unknown_ids() -> None:
    with pytest.raises(ValueError, match="not in the catalogue"):
        Event("sip.nothing.happened", 0.0, "s", None)


# -- the fields events really carry ------------------------------------------------------------


class FieldCheck:
    """An emit check: id catalogued, fields a subset of the spec, values JSON-able."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        spec = CATALOGUE[event.id]
        assert set(event.fields) <= set(spec.fields), (event.id, set(event.fields))
        record = event.to_dict()
        json.dumps(record)  # no bytes or objects in an event (no default=str needed)
        assert list(record)[: len(COMMON_FIELDS)] == list(COMMON_FIELDS)
        with self.lock:
            self.seen.setdefault(event.id, set()).update(event.fields)


def test_endpoint_scenarios_emit_only_catalogued_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    check = FieldCheck()
    monkeypatch.setattr(test_endpoint, "CHECK", check)
    for scenario in test_endpoint.SCENARIOS:
        scenario()
    endpoint_ids = {i for i in CATALOGUE if i.startswith("sip.") and i != "sip.flood.shed"}
    endpoint_ids -= {"sip.auth.recovered"}  # needs the recovery thread: see below
    endpoint_ids -= {i for i in endpoint_ids if i.startswith("sip.upstream.")}  # test_upstream
    assert endpoint_ids <= set(check.seen), endpoint_ids - set(check.seen)
    # Most events carry every field of their spec.
    for event_id in (
        "sip.request.received",
        "sip.response.sent",
        "sip.auth.attempt",
        "sip.call.started",
        "sip.call.ended",
        "sip.register.success",
    ):
        assert check.seen[event_id] == set(CATALOGUE[event_id].fields), event_id


def test_recovered_password_event_fields() -> None:
    from siptrap.endpoint.credentials import RecoveryWorker

    check = FieldCheck()
    box = test_endpoint.Box("asterisk", check=check)
    found: list[tuple[Any, str]] = []
    worker = RecoveryWorker(lambda job, pw: found.append((job, pw)), 200, 10)
    box.ep.recovery = worker
    worker.start()
    test_endpoint.register(box, "100", "password")  # wrong for 100, but a common password
    worker.stop(drain=True)
    assert [pw for _, pw in found] == ["password"]
    job, password = found[0]
    box.ep.on_recovered(job, password, box.now)
    (recovered,) = box.of("sip.auth.recovered")
    assert recovered["password"] == "password" and recovered["username"] == "100"
    (attempt,) = box.of("sip.auth.attempt")
    assert recovered["attempt_id"] == attempt["attempt_id"]
    assert check.seen["sip.auth.recovered"] == set(CATALOGUE["sip.auth.recovered"].fields)


def test_honeypot_events_emit_only_catalogued_fields(tmp_path: Path) -> None:
    """sensor.* and transport.* events and sip.flood.shed come from the app."""
    check = FieldCheck()

    class CheckingSink:
        name = "check"

        def open(self) -> None:
            pass

        def write(self, events: list[Event]) -> None:
            for event in events:
                check(event)

        def close(self) -> None:
            pass

    config = config_from_dict(
        {
            "sensor": {
                "data_dir": str(tmp_path / "data"),
                "listen": ["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:192.0.2.123:0"],
            },
            "recording": {"jsonl": False, "sqlite": False},
            "console": {"enabled": False, "summary_interval": 0.05},
            "flood": {"per_source_rate": 1, "burst": 1},
            "credentials": {"recover": False},
        }
    )

    async def scenario() -> None:
        honeypot = Honeypot(config, extra_sinks=[CheckingSink()])
        await honeypot.start()
        serving = asyncio.create_task(honeypot.serve())
        udp_port = honeypot.bound[0].port
        tcp_port = honeypot.bound[1].port
        options = test_endpoint.request("OPTIONS", "100")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(5):  # above the rate: shed and reported
                udp.sendto(options, ("127.0.0.1", udp_port))
        _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(test_endpoint.request("OPTIONS", "100", transport="TCP"))
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        await asyncio.sleep(0.1)
        honeypot.stop()
        await serving
        await honeypot.close()

    asyncio.run(scenario())
    for event_id in (
        "sensor.started",
        "sensor.stopped",
        "sensor.stats",
        "sensor.listen.failed",
        "sip.flood.shed",
        "transport.connection.opened",
        "transport.connection.closed",
    ):
        assert event_id in check.seen, event_id
        expected = set(CATALOGUE[event_id].fields)
        if event_id == "sip.flood.shed":  # a count per reason that occurred: rate only here
            expected -= {"reflection", "pressure", "delay"}
        if event_id != "transport.connection.opened":  # TLS fields only over TLS
            assert check.seen[event_id] == expected, event_id
