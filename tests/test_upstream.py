"""The registrar client (upstream/) in-process on a fake clock, against siptrap's own
registrar (the endpoint) as the far end: digest, refresh, refusal with backoff,
retransmission and timeout, Expires 0 on a clean stop, and the [[upstream]] settings."""

from __future__ import annotations

from typing import Any

import pytest

import test_endpoint
from siptrap.config import config_from_dict
from siptrap.events.catalogue import CATALOGUE
from siptrap.events.record import Event, Peer
from siptrap.settings import ConfigError
from siptrap.sip import Response, parse
from siptrap.upstream.client import BACKOFF_FIRST, TIMEOUT, Outgoing, RegistrarClient
from siptrap.upstream.settings import upstream_configs

REGISTRAR = test_endpoint.HONEYPOT_IP
EXTENSIONS = {"100", "101", "200"}


class Domain:
    """A RegistrarClient wired to an Endpoint acting as the registrar, by hand."""

    def __init__(self, password: str = "1234", expires: int = 60, users: str = "100-101") -> None:
        self.box = test_endpoint.Box("asterisk")
        entry = {
            "registrar": f"udp:{REGISTRAR}:5060",
            "users": users,
            "password": password,
            "expires": expires,
        }
        (config,) = upstream_configs([entry], EXTENSIONS)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.client = RegistrarClient((config,), self._emit)
        self.client.local = ("198.51.100.50", 5062)
        self.peer = Peer("udp", "198.51.100.50", 5062, REGISTRAR, 5060)
        self.sent: list[bytes] = []
        self.drop = False

    def _emit(self, event_id: str, fields: dict[str, Any]) -> None:
        # Each event is catalogued and carries only its spec's fields (as Event checks).
        assert set(fields) <= set(CATALOGUE[event_id].fields), (event_id, fields)
        Event(event_id, self.box.now, "test", None, fields)
        self.events.append((event_id, fields))

    def pump(self, out: list[Outgoing]) -> None:
        """Deliver datagrams to the registrar and its answers back, until quiet."""
        while out:
            item = out.pop(0)
            assert (item.host, item.port) == (REGISTRAR, 5060)
            self.sent.append(item.data)
            if self.drop:
                continue
            replies = self.box.deliver(item.data, self.peer)
            for reply in replies:
                assert isinstance(reply, Response)
                out += self.client.receive(reply, self.box.now)

    def advance(self, seconds: float, step: float = 0.25) -> None:
        end = self.box.now + seconds
        while self.box.now < end:
            self.box.now += step
            self.pump(self.client.handle_timers(self.box.now))

    def of(self, event_id: str) -> list[dict[str, Any]]:
        return [f for eid, f in self.events if eid == event_id]


def test_registers_with_digest_and_refreshes_at_half_the_expiry() -> None:
    d = Domain()
    d.pump(d.client.start(d.box.now))
    assert {f["user"] for f in d.of("sip.upstream.registered")} == {"100", "101"}
    assert len(d.box.ep.registrar) == 2  # the far end holds both bindings
    first = parse(d.sent[0])
    assert first.header("authorization") is None and first.header("expires") == "60"
    answered = [parse(m) for m in d.sent if parse(m).header("authorization") is not None]
    assert len(answered) == 2  # each challenge answered once
    (status,) = [s for s in d.client.status(d.box.now) if s["user"] == "100"]
    assert status["registered"] and status["expires_in"] == 60 and not status["last_error"]
    d.advance(29)
    assert len(d.of("sip.upstream.registered")) == 2
    d.advance(2)  # past half of 60 s: refreshed
    assert len(d.of("sip.upstream.registered")) == 4


def test_refused_credentials_fail_and_retry_with_bounded_backoff() -> None:
    d = Domain(password="wrong", users="100")
    d.pump(d.client.start(d.box.now))
    (failed,) = d.of("sip.upstream.failed")
    assert failed["status"] == 403 and failed["retry_in"] == BACKOFF_FIRST
    d.advance(BACKOFF_FIRST + 0.5)
    second = d.of("sip.upstream.failed")[1]
    assert second["retry_in"] == 2 * BACKOFF_FIRST
    for _ in range(12):
        d.advance(d.of("sip.upstream.failed")[-1]["retry_in"] + 0.5, step=1.0)
    assert max(f["retry_in"] for f in d.of("sip.upstream.failed")) == 300.0
    assert d.client.status(d.box.now)[0]["last_error"].startswith("403")


def test_no_answer_is_retransmitted_then_failed() -> None:
    d = Domain(users="100")
    d.drop = True
    d.pump(d.client.start(d.box.now))
    d.advance(TIMEOUT + 1)
    assert len(d.sent) >= 5  # T1 doubling to T2
    assert len(set(d.sent)) == 1  # retransmissions: the same request, byte for byte
    (failed,) = d.of("sip.upstream.failed")
    assert failed["status"] == 408


def test_a_clean_stop_sends_expires_zero() -> None:
    d = Domain()
    d.pump(d.client.start(d.box.now))
    d.pump(d.client.stop(d.box.now))
    assert len(d.box.ep.registrar) == 0
    assert {f["user"] for f in d.of("sip.upstream.removed")} == {"100", "101"}
    assert all(s["state"] == "removed" for s in d.client.status(d.box.now))


def test_upstream_settings() -> None:
    config = config_from_dict(
        {
            "extensions": [{"users": "100-109", "password": "x"}],
            "upstream": [{"registrar": "udp:127.0.0.1:5080", "users": "100-109", "password": "p"}],
        }
    )
    (up,) = config.upstream
    assert up.users[0] == "100" and len(up.users) == 10 and up.expires == 60
    assert up.target == ("127.0.0.1", 5080) and up.registrar == "udp:127.0.0.1:5080"
    for bad in (
        {"registrar": "127.0.0.1:5080", "users": "100"},
        {"registrar": "udp:127.0.0.1:5080", "users": "999"},  # not an extension
        {"registrar": "udp:127.0.0.1:5080", "users": "100", "expires": 1},
        {"registrar": "udp:127.0.0.1:5080", "users": "100", "colour": "red"},
        {"registrar": "tcp:127.0.0.1:5080", "users": "100"},  # not carried yet
    ):
        with pytest.raises(ConfigError):
            config_from_dict({"extensions": [{"users": "100"}], "upstream": [bad]})


def test_config_show_renders_upstream_and_actions_that_load_back_equal() -> None:
    import tomllib

    from siptrap.config import render

    config = config_from_dict(
        {
            "extensions": [{"users": "100-103", "password": "x"}],
            "upstream": [
                {
                    "registrar": "udp:192.0.2.10:5080",
                    "users": "100-102",
                    "password": 'p"w',
                    "expires": 120,
                    "outbound_proxy": "192.0.2.11:5060",
                }
            ],
            "actions": [
                {"kind": "kamailio", "rpc": "unix:/run/k.sock", "categories": ["scan"]},
                {"kind": "program", "command": ["/bin/echo", "{src_ip}"], "dry_run": True},
            ],
            "policy": {"ladder": ["try_later"], "expire": 60.0},
        }
    )
    again = config_from_dict(tomllib.loads(render(config)))
    assert again.upstream == config.upstream
    assert again.actions == config.actions
    assert again.policy == config.policy
