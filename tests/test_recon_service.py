"""The recon service on loopback (127.0.0.2 allowed by `[recon] allow`, as a lab would):
real sockets, a real OPTIONS responder, open and closed TCP ports, a local RDAP server,
traceroute, a p0f API socket; and the guards: 127.0.0.1 and a forbidden source are
refused and nothing reaches them, names are checked, queue and budget are bounded."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from siptrap.analysis.reconnaissance import Probe, ReconAsk
from siptrap.events.record import Event
from siptrap.recon.service import Reconnaissance
from siptrap.recon.settings import ReconConfig

LAB = "127.0.0.2"


def free(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Responder(asyncio.DatagramProtocol):
    """A SIP UA that answers OPTIONS (and counts what reached it)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        keep = [
            ln
            for ln in head.split("\r\n")[1:]
            if ln.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        reply = "\r\n".join(
            [
                "SIP/2.0 200 OK",
                *keep,
                "User-Agent: lab-ua/1.0",
                "Allow: INVITE, ACK, BYE, OPTIONS",
                "Content-Length: 0",
                "",
                "",
            ]
        )
        self.transport.sendto(reply.encode(), addr)


def service(events: list[Event], **kw: Any) -> Reconnaissance:
    kw.setdefault("allow", (f"{LAB}/32",))
    kw.setdefault("timeout", 1.0)
    kw.setdefault("rate", 100.0)
    kw.setdefault("target_rate", 50.0)
    return Reconnaissance(ReconConfig(**kw), events.append, "test", "active")


def by_check(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e.fields["check"], e.fields["target"]): e.fields for e in events}


async def wait_for(events: list[Event], count: int, limit: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while len(events) < count and loop.time() < end:
        await asyncio.sleep(0.05)


async def rdap_server() -> tuple[web.AppRunner, str]:
    async def ip(request: web.Request) -> web.Response:
        addr = request.match_info["addr"]
        return web.json_response(
            {
                "handle": "LAB-NET",
                "name": "lab",
                "country": "ZZ",
                "startAddress": addr,
                "endAddress": addr,
            }
        )

    app = web.Application()
    app.router.add_get("/ip/{addr}", ip)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free(socket.SOCK_STREAM, "127.0.0.1")
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/ip/"


async def p0f_server(path: Path) -> asyncio.AbstractServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        query = await reader.readexactly(21)
        assert struct.unpack("<I", query[:4])[0] == 0x50304601
        names = [b"Linux", b"2.2.x-3.x", b"", b"", b"Ethernet", b""]
        writer.write(
            struct.pack(
                "<IIIIIIIIIhBB32s32s32s32s32s32s",
                0x50304602,
                0x10,
                0,
                0,
                1,
                5,
                0,
                0,
                0,
                0,
                0,
                0,
                *names,
            )
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(answer, str(path))


def test_checks_on_an_allowed_lab_host(tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        udp = free(socket.SOCK_DGRAM, LAB)
        transport, ua = await loop.create_datagram_endpoint(Responder, local_addr=(LAB, udp))
        tcp_open = free(socket.SOCK_STREAM, LAB)
        listener = await asyncio.start_server(lambda r, w: w.close(), LAB, tcp_open)
        tcp_closed = free(socket.SOCK_STREAM, LAB)
        runner, rdap_url = await rdap_server()
        p0f = await p0f_server(tmp_path / "p0f.sock")
        events: list[Event] = []
        recon = service(
            events,
            ports=(f"tcp/{tcp_open}", f"tcp/{tcp_closed}"),
            rdap_url=rdap_url,
            p0f_socket=str(tmp_path / "p0f.sock"),
            traceroute=shutil.which("traceroute") or "traceroute",
        )
        await recon.start()
        probes = (
            Probe("sip_probe", LAB, "Contact", udp, "udp"),
            Probe("port", LAB),
            Probe("rdap", LAB),
            Probe("geoip", LAB),
            Probe("os", LAB),
            Probe("route", LAB),
            Probe("port", LAB, "SDP connection (c=)", udp, "udp"),
        )
        assert recon.submit(ReconAsk(LAB, probes, "c1")) is None
        await wait_for(events, len(probes))
        await recon.aclose()
        transport.close()
        listener.close()
        p0f.close()
        await runner.cleanup()
        got = by_check(events)
        sip = got[("sip_probe", LAB)]
        assert sip["outcome"] == "ok" and sip["address"] == LAB and sip["port"] == udp
        assert sip["detail"]["status"] == 200 and sip["detail"]["user_agent"] == "lab-ua/1.0"
        assert "OPTIONS" in sip["detail"]["allow"]
        assert ua.received and ua.received[0].startswith(b"OPTIONS sip:127.0.0.2:")
        ports = [e.fields for e in events if e.fields["check"] == "port"]
        states = {k: v for f in ports for k, v in f["detail"]["ports"].items()}
        assert states[f"tcp/{tcp_open}"] == "open" and states[f"tcp/{tcp_closed}"] == "closed"
        assert states[f"udp/{udp}"] == "open|filtered"  # the UA is there: no ICMP back
        assert got[("rdap", LAB)]["detail"]["handle"] == "LAB-NET"
        assert got[("os", LAB)]["detail"]["os_name"] == "Linux"
        assert got[("geoip", LAB)]["outcome"] == "failed"  # loopback is in no country
        route = got[("route", LAB)]
        if shutil.which("traceroute"):
            assert route["outcome"] == "ok" and route["detail"]["hops"][-1] == LAB
        for fields in got.values():
            assert fields["source"] == LAB and fields["duration"] >= 0
            json.dumps(fields)  # every result is JSON (the jsonl file, the recon table)

    asyncio.run(main())


def test_the_guards_refuse_and_send_nothing() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        port = free(socket.SOCK_DGRAM, "127.0.0.1")
        transport, victim = await loop.create_datagram_endpoint(
            Responder, local_addr=("127.0.0.1", port)
        )
        events: list[Event] = []
        recon = service(events)
        await recon.start()
        # an allowed source whose Contact names the loopback address: SSRF refused
        bad = (
            Probe("sip_probe", "127.0.0.1", "Contact", port, "udp"),
            Probe("port", "127.0.0.1", "SDP connection (c=)", port, "udp"),
            Probe("sip_probe", "169.254.169.254", "top Via", 5060, "udp"),
            Probe("sip_probe", "10.0.0.1", "Contact", 5060, "udp"),
            Probe("dns", "$(reboot).example.com", "Contact"),
            Probe("sip_probe", "evil;rm -rf.example", "Contact", 5060, "udp"),
        )
        assert recon.submit(ReconAsk(LAB, bad, "g1")) is None
        # a source that is itself forbidden: nothing about it is checked at all
        assert (
            recon.submit(
                ReconAsk(
                    "10.9.9.9",
                    (Probe("port", "10.9.9.9"), Probe("sip_probe", LAB, "Contact", port, "udp")),
                    "g2",
                )
            )
            is None
        )
        await wait_for(events, len(bad) + 2)
        await asyncio.sleep(0.3)
        await recon.aclose()
        transport.close()
        assert len(events) == len(bad) + 2
        for event in events:
            assert event.fields["outcome"] == "refused_by_guard", event.fields
            assert event.fields["detail"]["reason"]
            assert event.fields["address"] is None
        reasons = {e.fields["target"]: e.fields["detail"]["reason"] for e in events}
        assert "loopback" in reasons["127.0.0.1"]
        assert "link-local" in reasons["169.254.169.254"]
        assert "not a valid host name" in reasons["$(reboot).example.com"]
        assert "the source 10.9.9.9" in reasons[LAB]
        assert victim.received == []  # nothing reached 127.0.0.1
        assert recon.probes == 0 and recon.refused == len(events)

    asyncio.run(main())


def test_passive_mode_queue_and_budget_are_bounded() -> None:
    async def main() -> None:
        events: list[Event] = []
        recon = Reconnaissance(
            ReconConfig(allow=(f"{LAB}/32",), queue_size=2, budget=1, timeout=0.5),
            events.append,
            "t",
            "passive",
        )
        ask = ReconAsk(LAB, (Probe("port", LAB, "SDP connection (c=)", 9, "udp"),), "q")
        assert recon.submit(ask) == "passive mode"
        assert recon.set_mode("active") == "passive"
        assert recon.submit(ask) == "recon is not running"
        await recon.start()
        two = ReconAsk(
            LAB,
            (
                Probe("port", LAB, "SDP connection (c=)", 9, "udp"),
                Probe("port", LAB, "SDP connection (c=)", 11, "udp"),
            ),
            "b",
        )
        assert recon.submit(two) is None
        assert recon.submit(two) is None  # the same probes, in flight: not queued again
        await wait_for(events, 2)
        await asyncio.sleep(0.2)
        await recon.aclose()
        outcomes = sorted(e.fields["outcome"] for e in events)
        assert len(events) == 2 and outcomes == ["ok", "skipped"]
        skipped = next(e for e in events if e.fields["outcome"] == "skipped")
        assert "budget" in skipped.fields["detail"]["reason"]

    asyncio.run(main())


def test_asks_beyond_the_queue_size_are_dropped_and_counted() -> None:
    async def main() -> None:
        recon = Reconnaissance(
            ReconConfig(allow=(f"{LAB}/32",), queue_size=2, timeout=0.5), [].append, "t", "active"
        )
        await recon.start()

        def ask(port: int) -> ReconAsk:
            return ReconAsk(LAB, (Probe("port", LAB, "SDP connection (c=)", port, "udp"),), "q")

        # no await between them: the workers have taken none yet, two asks wait
        assert recon.submit(ask(9)) is None and recon.submit(ask(11)) is None
        assert recon.submit(ask(13)) == "recon queue full" and recon.dropped == 1
        await recon.aclose()

    asyncio.run(main())


def test_a_custom_mode_runs_only_its_checks() -> None:
    async def main() -> None:
        events: list[Event] = []
        recon = Reconnaissance(
            ReconConfig(allow=(f"{LAB}/32",), modes=("quiet=geoip",)), events.append, "t", "quiet"
        )
        await recon.start()
        ask = ReconAsk(LAB, (Probe("geoip", LAB), Probe("port", LAB)), "m")
        assert recon.submit(ask) is None
        await wait_for(events, 2)
        await recon.aclose()
        got = by_check(events)
        assert got[("port", LAB)]["outcome"] == "skipped"
        assert "mode quiet" in got[("port", LAB)]["detail"]["reason"]
        assert got[("geoip", LAB)]["outcome"] == "failed" and recon.probes == 1

    asyncio.run(main())


@pytest.mark.parametrize("probe", [Probe("route", "127.0.0.1"), Probe("dns", "127.0.0.1")])
def test_forbidden_targets_never_reach_a_program_or_a_resolver(probe: Probe) -> None:
    async def main() -> list[Event]:
        events: list[Event] = []
        recon = service(events, allow=("127.0.0.0/8",), never=("127.0.0.1/32",))
        await recon.start()
        recon.submit(ReconAsk("127.0.0.9", (probe,), "n"))
        await wait_for(events, 1)
        await recon.aclose()
        return events

    (event,) = asyncio.run(main())
    assert event.fields["outcome"] == "refused_by_guard"
    assert "never" in event.fields["detail"]["reason"]


def test_lookups_of_attacker_names_spend_the_source_budget() -> None:
    async def main() -> list[Event]:
        events: list[Event] = []
        # resolvers on loopback where nothing listens: the lookups fail at once, locally
        recon = service(events, budget=2, resolvers=("127.0.0.1",), timeout=0.5)
        await recon.start()
        names = ("a.lab.test", "b.lab.test", "c.lab.test")
        recon.submit(ReconAsk(LAB, tuple(Probe("dns", n, "Contact") for n in names), "b"))
        await wait_for(events, 3)
        await recon.aclose()
        return events

    events = asyncio.run(main())
    outcomes = {e.fields["target"]: e.fields["outcome"] for e in events}
    assert list(outcomes.values()).count("skipped") == 1
    skipped = next(e for e in events if e.fields["outcome"] == "skipped")
    assert "budget" in skipped.fields["detail"]["reason"]
    assert all(o in ("failed", "timeout", "skipped") for o in outcomes.values())
