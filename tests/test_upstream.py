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
from siptrap.upstream.client import BACKOFF_FIRST, TIMEOUT, Link, Outgoing, RegistrarClient
from siptrap.upstream.settings import upstream_configs

REGISTRAR = test_endpoint.HONEYPOT_IP
EXTENSIONS = {"100", "101", "200"}


class Domain:
    """A RegistrarClient wired to an Endpoint acting as the registrar, by hand."""

    def __init__(
        self,
        password: str = "1234",
        expires: int = 60,
        users: str = "100-101",
        transport: str = "udp",
    ) -> None:
        self.box = test_endpoint.Box("asterisk")
        entry = {
            "registrar": f"{transport}:{REGISTRAR}:5060",
            "users": users,
            "password": password,
            "expires": expires,
        }
        (config,) = upstream_configs([entry], EXTENSIONS)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.client = RegistrarClient((config,), self._emit)
        self.client.local = ("198.51.100.50", 5062)
        self.peer = Peer(transport, "198.51.100.50", 5062, REGISTRAR, 5060, 7)
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


def test_over_tcp_it_waits_for_its_link_never_retransmits_and_registers_again() -> None:
    d = Domain(users="100", transport="tcp")
    assert d.client.start(d.box.now) == []  # no connection yet: nothing to send on
    (wanted,) = d.client.take_wanted()
    assert wanted.registrar == f"tcp:{REGISTRAR}:5060" and d.client.take_wanted() == []
    assert d.client.status(d.box.now)[0]["state"] == "connecting"
    link = Link(("198.51.100.50", 40001), (REGISTRAR, 5060))
    d.pump(d.client.link_up(wanted.registrar, link, d.box.now))
    first = parse(d.sent[0])
    assert first.top_via is not None and str(first.top_via.transport).upper() == "TCP"
    assert "198.51.100.50:40001" in (first.header("via") or "")
    assert (first.header("contact") or "").endswith("@198.51.100.50:40001;transport=tcp>")
    assert str(first.uri).endswith(";transport=tcp")
    assert [f["user"] for f in d.of("sip.upstream.registered")] == ["100"]
    # The connection drops (the registrar restarted): failed, and a new link after backoff.
    d.client.link_down(wanted.registrar, "closed by the far end", d.box.now)
    (failed,) = d.of("sip.upstream.failed")
    assert "connection lost" in failed["error"] and failed["retry_in"] == BACKOFF_FIRST
    d.advance(BACKOFF_FIRST + 0.5)
    assert [w.registrar for w in d.client.take_wanted()] == [wanted.registrar]
    d.client.link_failed(wanted.registrar, "connection refused", d.box.now)
    assert d.of("sip.upstream.failed")[-1]["retry_in"] == 2 * BACKOFF_FIRST
    # Over a reliable transport a REGISTER is never retransmitted; it times out.
    d.advance(2 * BACKOFF_FIRST + 0.5)
    assert d.client.take_wanted()
    d.drop = True
    sent = len(d.sent)
    d.pump(d.client.link_up(wanted.registrar, link, d.box.now))
    d.advance(TIMEOUT - 1)
    assert len(d.sent) == sent + 1
    d.advance(1.5)
    assert d.of("sip.upstream.failed")[-1]["status"] == 408


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
        {"registrar": "sctp:127.0.0.1:5080", "users": "100"},
        {"registrar": "tcp:bad_name!:5080", "users": "100"},
        {"registrar": "tls:pbx.example.com", "users": "100", "tls_verify": "no"},
        {"registrar": "tcp:pbx.example.com", "users": "100", "dns": "ns.example.com"},
    ):
        with pytest.raises(ConfigError):
            config_from_dict({"extensions": [{"users": "100"}], "upstream": [bad]})


def test_tcp_tls_and_host_names_in_upstream_settings() -> None:
    def one(entry: dict[str, Any]) -> Any:
        (up,) = config_from_dict(
            {"extensions": [{"users": "100"}], "upstream": [{"users": "100", **entry}]}
        ).upstream
        return up

    tcp = one({"registrar": "tcp:127.0.0.1:5080"})
    assert (tcp.transport, tcp.reliable, tcp.resolved, tcp.srv) == ("tcp", True, True, False)
    tls = one({"registrar": "TLS:pbx.example.com", "tls_ca": "/ca.pem", "dns": "127.0.0.1:53"})
    # A name without a port: SRV first (RFC 3263), 5061 if there is none.
    assert (tls.transport, tls.host, tls.port, tls.srv, tls.resolved) == (
        "tls",
        "pbx.example.com",
        5061,
        True,
        False,
    )
    assert tls.registrar == "tls:pbx.example.com" and tls.tls_verify
    named = one({"registrar": "udp:localhost:5080"})
    assert (named.port, named.srv, named.resolved) == (5080, False, False)
    six = one({"registrar": "tcp:[::1]"})  # an address without a port: the default port
    assert (six.host, six.port, six.srv, six.registrar) == ("::1", 5060, False, "tcp:[::1]:5060")


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
                },
                {
                    "registrar": "tls:pbx.example.com",
                    "users": "103",
                    "tls_ca": "/etc/ssl/pbx.pem",
                    "tls_verify": False,
                    "dns": "192.0.2.53",
                },
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


def test_locate_takes_addresses_as_they_are_and_finds_localhost() -> None:
    import asyncio

    from siptrap.upstream.locate import locate

    def up(registrar: str) -> Any:
        entry = {"registrar": registrar, "users": "100"}
        return config_from_dict({"extensions": [{"users": "100"}], "upstream": [entry]}).upstream[0]

    assert asyncio.run(locate(up("tls:[::1]:5071"))) == [("::1", 5071)]
    proxied = config_from_dict(
        {
            "extensions": [{"users": "100"}],
            "upstream": [
                {"registrar": "tcp:pbx.invalid", "users": "100", "outbound_proxy": "127.0.0.9"}
            ],
        }
    ).upstream[0]
    assert asyncio.run(locate(proxied)) == [("127.0.0.9", 5060)]  # the proxy, no lookup
    found = asyncio.run(locate(up("tcp:localhost:5080")))
    assert found and all(port == 5080 for _, port in found)
    assert {ip for ip, _ in found} <= {"127.0.0.1", "::1"}, found


def test_srv_records_in_priority_then_weighted_random_order() -> None:
    from dataclasses import dataclass
    from itertools import cycle

    from siptrap.upstream.locate import srv_order

    @dataclass(frozen=True)
    class Rr:
        name: str
        priority: int
        weight: int

    records = [Rr("b", 10, 60), Rr("a", 10, 40), Rr("z", 10, 0), Rr("low", 5, 1), Rr("x", 20, 9)]
    # pick() * the weights left: 0.1 * 100 falls in a (40, the lighter first), then b.
    order = srv_order(records, pick=cycle([0.1]).__next__)
    assert [r.name for r in order] == ["low", "a", "b", "z", "x"]
    order = srv_order(records, pick=cycle([0.9]).__next__)
    assert [r.name for r in order] == ["low", "b", "a", "z", "x"]
    # Over many draws the heavier entry comes first about as often as its weight says.
    import random

    draws = random.Random(7)
    firsts = [srv_order(records[:2], pick=draws.random)[0].name for _ in range(2000)]
    assert 0.55 < firsts.count("b") / 2000 < 0.65
