"""The svcrash action (the paper's case study 1): a real svwar run against siptrap ends
early once the analysis names it, and nothing is ever sent to a source that is not
SIPVicious."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from conftest import require_tool
from siptrap.actions.base import Job
from siptrap.actions.policy import Change
from siptrap.actions.settings import ActionSpec
from siptrap.actions.svcrash import SvcrashAction, stop_response
from siptrap.sip import Response, parse
from siptrap_proc import Siptrap, run_tool

EXTENSIONS = 4000


def job(tool: str, port: int, reason: str = "alert", transport: str = "udp") -> Job:
    change = Change("127.0.0.1", None, "try_later", "scan", "a1", time.time() + 60, reason)
    facts = {"src_ip": "127.0.0.1", "src_port": port, "transport": transport, "tool": tool}
    return Job(change, facts, time.time())


def test_the_stop_response_is_a_response_with_an_undecodable_sipvicious_tag() -> None:
    msg = parse(stop_response("198.51.100.7", 5061))
    assert isinstance(msg, Response) and msg.status == 200 and not msg.defects
    tag = msg.from_addr.tag if msg.from_addr else None
    assert tag is not None and bytes.fromhex(tag).count(b"\x01") == 2


def test_never_sent_to_a_source_that_is_not_sipvicious() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        action = SvcrashAction(ActionSpec("svcrash"))
        assert action.apply(job("sipsak", port)) is None
        assert action.apply(job("SIPVicious svwar", port, reason="persisted")) is None
        assert action.apply(job("SIPVicious svwar", port, transport="tcp")) is None
        with pytest.raises(TimeoutError):
            listener.recv(100)
        assert action.apply(job("SIPVicious svwar", port)) is not None
        assert b"tag=" in listener.recv(2000)


@pytest.mark.tools
def test_svcrash_ends_a_real_svwar_run_early(tmp_path: Path) -> None:
    svwar = require_tool("sipvicious_svwar")
    config = """
[policy]
allow = ["127.0.0.3/32"]
[[actions]]
kind = "svcrash"
categories = ["scan", "enumeration"]
"""
    honeypot = Siptrap(tmp_path / "data", config, ["--quiet"]).start()
    try:
        started = time.time()
        out = run_tool(
            [
                svwar,
                f"-e100-{100 + EXTENSIONS}",
                "-m",
                "OPTIONS",
                "-p",
                str(honeypot.port),
                "127.0.0.1",
            ],
            timeout=120,
        )
        took = time.time() - started
        sent = honeypot.wait_for(lambda e: e.get("kind") == "svcrash", 10)
        assert sent and sent[0]["event"] == "response.action.executed", out
        assert sent[0]["src_ip"] == "127.0.0.1" and "SIPVicious" in sent[0]["detail"]
        time.sleep(1)
        asked = len([e for e in honeypot.events("sip.request.received")])
        print(f"svwar ended after {asked} of {EXTENSIONS} requests, {took:.1f} s")
        assert asked < EXTENSIONS / 2, out
        assert "could not decode to tag" in out, out
    finally:
        honeypot.stop()
