"""siptrap inside a real VoIP domain on loopback (issue 11): Kamailio runs the shipped
examples/kamailio/kamailio.cfg as the domain's registrar and proxy (127.0.0.5), siptrap
runs behind it (127.0.0.1), SIPVicious attacks through it from 127.0.0.1, and a legitimate
phone calls from 127.0.0.3 (the allow-list)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from kamailio_domain import KAMAILIO, Kamailio, Phone, sip_request
from recon_pki import LabCA
from siptrap_proc import BIN, Siptrap, free_port, run_tool

pytestmark = pytest.mark.tools
PHONE = "127.0.0.3"
ATTACKER = "127.0.0.1"


def domain_config(rundir: Path, **policy: Any) -> str:
    values = {"allow": [f"{PHONE}/32"], "ladder": ["try_later", "forbid"], "step_after": 1.5}
    values.update(policy)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
    return f"""
[sensor]
personality = "yealink"
[analysis]
proxies = ["127.0.0.5"]
[policy]
{lines}
[[actions]]
kind = "kamailio"
rpc = "unix:{rundir}/kamailio_rpc.sock"
categories = ["scan", "enumeration", "bruteforce", "flood", "spit", "toll_fraud"]
min_severity = "low"
[[actions]]
kind = "blocklist"
[[extensions]]
users = "100-109"
behaviour = "answer"
media = "silence"
call_duration = 1
"""


@pytest.fixture
def domain(tmp_path: Path) -> Iterator[tuple[Siptrap, Kamailio]]:
    require_tool(KAMAILIO)
    require_tool("kamcmd")
    rundir = tmp_path / "kamailio"
    rundir.mkdir()
    honeypot = Siptrap(tmp_path / "data", domain_config(rundir, expire=5), ["--quiet"])
    honeypot.start()
    kamailio = Kamailio(rundir, f"sip:127.0.0.1:{honeypot.port}")
    try:
        kamailio.start()
        yield honeypot, kamailio
    finally:
        kamailio.stop()
        honeypot.stop()


def status(reply: str | None) -> int | None:
    return int(reply.split(" ", 2)[1]) if reply else None


def probe(kamailio: Kamailio, source: str, method: str = "OPTIONS") -> int | None:
    return status(sip_request(method, "105", (kamailio.host, kamailio.port), source))


def wait_until(check: Any, timeout: float) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def test_kamailio_cfg_registers_phones_and_forwards_unknown_users(
    domain: tuple[Siptrap, Kamailio],
) -> None:
    honeypot, kamailio = domain
    sipsak = require_tool("sipsak")
    target = f"sip:555@{kamailio.host}:{kamailio.port}"
    out = run_tool(
        [sipsak, "-U", "-C", f"sip:555@{PHONE}:5999", "-a", "secret", "-s", target, "-vv"],
        timeout=30,
    )
    assert "completed successful" in out, out
    assert "555" in kamailio.registered()
    wrong = run_tool(
        [sipsak, "-U", "-C", f"sip:556@{PHONE}:5998", "-a", "wrong", "-s", target], timeout=30
    )
    assert "556" not in kamailio.registered(), wrong
    # A request for a user nobody registered reaches siptrap, answered in its voice.
    reply = sip_request("OPTIONS", "105", (kamailio.host, kamailio.port), PHONE)
    assert reply is not None and "Yealink" in reply and "kamailio" not in reply
    # siptrap saw the phone's address (the proxy's header), not Kamailio's.
    (seen,) = honeypot.wait_for(lambda e: e.get("origin_ip") == PHONE)
    assert seen["src_ip"] == "127.0.0.5" and seen["method"] == "OPTIONS"
    # The header is the proxy's alone: one the caller writes is stripped by Kamailio.
    forged = "X-Siptrap-Source: 198.51.100.66:5060;transport=udp\r\n"
    reply = sip_request("OPTIONS", "106", (kamailio.host, kamailio.port), PHONE, extra=forged)
    assert reply is not None
    (seen,) = honeypot.wait_for(lambda e: e.get("to_user") == "106")
    assert seen["origin_ip"] == PHONE


def test_a_call_through_kamailio_comes_back_through_it(domain: tuple[Siptrap, Kamailio]) -> None:
    honeypot, kamailio = domain
    phone = Phone(PHONE, (kamailio.host, kamailio.port))
    try:
        ok = phone.invite("101")
        assert ok is not None and ok.startswith("SIP/2.0 200"), ok
        # siptrap copied Kamailio's Record-Route: the dialog goes through the proxy.
        assert phone.routes and kamailio.host in phone.routes[0], ok
        # siptrap hangs up after call_duration: its BYE follows the route set, via Kamailio.
        bye = phone.answer_bye(20)
        assert bye is not None, "no BYE came back"
        text, sender = bye
        assert sender == (kamailio.host, kamailio.port), sender
        assert "Yealink" in text or "yealink" in text.lower() or text.startswith("BYE ")
    finally:
        phone.close()
    invite = next(e for e in honeypot.events("sip.request.received") if e["method"] == "INVITE")
    assert invite["src_ip"] == "127.0.0.5" and invite["origin_ip"] == PHONE
    acks = honeypot.wait_for(lambda e: e.get("method") == "ACK")
    assert acks and acks[0]["src_ip"] == "127.0.0.5"  # the ACK too came through Kamailio
    # Forwarded by the domain's proxy vs straight at the honeypot: the decision tree's branch.
    direct = sip_request("INVITE", "999", ("127.0.0.1", honeypot.port), ATTACKER)
    forwarded = sip_request("INVITE", "998", (kamailio.host, kamailio.port), PHONE)
    assert direct is not None and forwarded is not None
    conclusions = wait_until(lambda: _conclusions(honeypot), 15)
    assert any("Direct attack: 999" in c for c in conclusions), conclusions
    assert any("Dial-plan fault: 998" in c for c in conclusions), conclusions


def _conclusions(honeypot: Siptrap) -> list[str]:
    found = []
    for alert in honeypot.events("analysis.alert.raised"):
        found += [str(c) for c in alert.get("conclusions") or []]
    wanted = ("Direct attack: 999", "Dial-plan fault: 998")
    return found if all(any(w in c for c in found) for w in wanted) else []


def test_svwar_through_kamailio_is_blocked_503_then_403_and_the_phone_still_calls(
    domain: tuple[Siptrap, Kamailio],
) -> None:
    honeypot, kamailio = domain
    svwar = require_tool("sipvicious_svwar")
    for method in ("OPTIONS", "INVITE"):
        run_tool(
            [svwar, "-e100-140", "-m", method, "-p", str(kamailio.port), kamailio.host],
            timeout=90,
        )
        if method == "OPTIONS":
            alerts = honeypot.wait_for(lambda e: e["event"] == "analysis.alert.raised", 15)
            assert alerts and {a["src_ip"] for a in alerts} == {ATTACKER}  # not Kamailio's
            assert all(a["tool"] == "SIPVicious svwar" for a in alerts)
            changed = honeypot.wait_for(lambda e: e["event"] == "response.policy.changed", 10)
            assert changed[0]["src_ip"] == ATTACKER and changed[0]["step"] == "try_later"
            pushed = honeypot.wait_for(lambda e: e.get("operation") == "htable.setxi", 10)
            print(f"htable set {_seconds(pushed[0], alerts[0])} s after the alert (measured)")
            assert kamailio.htable().get(ATTACKER) in (1, 2)
            reply = sip_request("OPTIONS", "105", (kamailio.host, kamailio.port), ATTACKER)
            assert status(reply) in (503, 403), reply
            if status(reply) == 503:
                assert reply is not None and "Retry-After:" in reply
    # The attack persisted (the INVITE scan, mirrored to siptrap): 403 now.
    assert wait_until(lambda: probe(kamailio, ATTACKER) == 403, 10)
    assert kamailio.htable()[ATTACKER] == 2

    # The action sets Kamailio's htable after the event was emitted, and the event reaches
    # events.jsonl within recording.flush_interval: wait for it.
    def steps() -> list[str]:
        return [e["step"] for e in honeypot.events("response.policy.changed")]

    assert wait_until(lambda: steps()[:2] == ["try_later", "forbid"], 5), steps()
    # Mirrored copies are recorded, never answered by siptrap.
    mirrored = honeypot.events("sip.request.received")
    assert any(e.get("blocked_by_proxy") for e in mirrored)
    # A legitimate phone from another address still places calls.
    assert probe(kamailio, PHONE) == 200
    sipp = require_tool("sipp")
    out = run_tool(
        [
            sipp,
            "-sn",
            "uac",
            "-i",
            PHONE,
            "-p",
            "0",
            "-s",
            "102",
            "-m",
            "1",
            "-d",
            "200",
            "-timeout",
            "20",
            "-nostdin",
            f"{kamailio.host}:{kamailio.port}",
        ],
        timeout=40,
    )
    assert "Successful call" in out, out
    # The attack stopped: the block expires (forbid -> try_later -> free), on time.
    t0 = time.time()
    assert wait_until(lambda: ATTACKER not in kamailio.htable(), 25)
    print(f"block gone {time.time() - t0:.1f} s after the attack stopped (expire 5 s a step)")

    def reasons() -> list[str]:
        return [e["reason"] for e in honeypot.events("response.policy.changed")]

    assert wait_until(lambda: reasons()[-2:] == ["relaxed", "expired"], 5), reasons()
    assert probe(kamailio, ATTACKER) == 200
    # Blocked again, then lifted at once by `siptrap blocks lift`.
    sip_request(
        "OPTIONS", "105", (kamailio.host, kamailio.port), ATTACKER, user_agent="friendly-scanner"
    )
    run_tool([svwar, "-e100-110", "-m", "OPTIONS", "-p", str(kamailio.port), kamailio.host])
    assert wait_until(lambda: ATTACKER in kamailio.htable(), 10)
    assert probe(kamailio, ATTACKER) in (503, 403)
    with persisting(kamailio):  # the attack goes on meanwhile (each step holds 5 s)
        listed = json.loads(cli(honeypot, "blocks", "list", "--json").stdout)
    assert [b["src_ip"] for b in listed] == [ATTACKER]
    assert listed[0]["step"] in ("try_later", "forbid") and listed[0]["expires"] > time.time()
    lifted = cli(honeypot, "blocks", "lift", ATTACKER, "--config", str(honeypot.config_path))
    assert lifted.returncode == 0, lifted.stderr
    assert ATTACKER not in kamailio.htable()  # at once, by the command itself
    # The running honeypot did the lift, took it off its ladder and recorded who asked.
    assert honeypot.wait_for(lambda e: e.get("reason") == "lifted", 5)
    controls = honeypot.events("sensor.control")
    assert [c["command"] for c in controls] == [f"blocks lift {ATTACKER}"], controls
    assert controls[0]["who"].endswith("via siptrap blocks lift"), controls
    assert json.loads(cli(honeypot, "blocks", "list", "--json").stdout) == []
    assert probe(kamailio, ATTACKER) == 200


@contextlib.contextmanager
def persisting(kamailio: Kamailio) -> Iterator[None]:
    """The attacker keeps sending (a request every 0.3 s) while the block is inspected."""
    stop = threading.Event()

    def attack() -> None:
        while not stop.wait(0.3):
            sip_request("OPTIONS", "105", (kamailio.host, kamailio.port), ATTACKER, timeout=0.3)

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def cli(honeypot: Siptrap, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args, "--data-dir", str(honeypot.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _seconds(later: dict[str, Any], earlier: dict[str, Any]) -> float:
    from datetime import datetime

    def ts(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()

    return round(ts(later) - ts(earlier), 3)


UPSTREAM_USERS = {"100", "101", "102"}
PBX_NAME = "pbx.siptrap.test"


def server_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """Kamailio's TLS certificate and key, for the PBX's name and 127.0.0.5, issued by a
    test CA; and that CA's certificate, which the honeypot trusts (`tls_ca`)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = LabCA(folder)
    cert, key = ca.issue([PBX_NAME, "127.0.0.5"], "kamailio")
    return cert, key, ca.pem


def require_kamailio_module(name: str) -> None:
    """Skip without Kamailio's module `name` (tls: Debian's kamailio-tls-modules), unless
    SIPTRAP_REQUIRE_TOOLS=1 (then fail)."""
    import glob
    import os

    if glob.glob(f"/usr/lib/*/kamailio/modules/{name}.so"):
        return
    if os.environ.get("SIPTRAP_REQUIRE_TOOLS") == "1":
        pytest.fail(f"Kamailio's {name} module is not installed")
    pytest.skip(f"Kamailio's {name} module is not installed")


@contextlib.contextmanager
def dns_for_the_pbx(kamailio: Kamailio) -> Iterator[str]:
    """dnsmasq on loopback that knows the PBX by name: its A record and an SRV record for
    SIP over TLS (`_sips._tcp`) naming Kamailio's TLS port. Yields "ADDR:PORT"."""
    from kamailio_domain import free_udp_port

    port = free_udp_port("127.0.0.1")
    proc = subprocess.Popen(
        [
            require_tool("dnsmasq"),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={port}",
            f"--pid-file={kamailio.rundir / 'dnsmasq.pid'}",
            "--local=/test/",
            f"--host-record={PBX_NAME},{kamailio.host}",
            f"--srv-host=_sips._tcp.{PBX_NAME},{PBX_NAME},{kamailio.tls_port},0,5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        assert proc.poll() is None, "dnsmasq did not start"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_siptrap_registers_its_extensions_at_kamailio(tmp_path: Path, transport: str) -> None:
    """UDP to Kamailio's address; TCP to it; TLS to the PBX by name only (SRV and A records
    from a dnsmasq the test starts, Kamailio's certificate checked against that name)."""
    require_tool(KAMAILIO)
    require_tool("kamcmd")
    rundir = tmp_path / "kamailio"
    rundir.mkdir()
    honeypot_port_holder = Siptrap(tmp_path / "data", "", ["--quiet"])
    if transport == "tls":
        require_kamailio_module("tls")
    pki = server_certificate(tmp_path / "pki") if transport == "tls" else None
    cert = pki[:2] if pki is not None else None
    kamailio = Kamailio(
        rundir, f"sip:127.0.0.1:{honeypot_port_holder.port}", tcp=transport == "tcp", tls=cert
    )
    with contextlib.ExitStack() as stack:
        if transport == "udp":
            registrar, extra = f"udp:{kamailio.host}:{kamailio.port}", ""
        elif transport == "tcp":
            registrar, extra = f"tcp:{kamailio.host}:{kamailio.tcp_port}", ""
        else:
            assert pki is not None
            dns = stack.enter_context(dns_for_the_pbx(kamailio))
            registrar = f"tls:{PBX_NAME}"  # no port: SRV
            extra = f'tls_ca = "{pki[2]}"\ndns = "{dns}"\n'
            # ...and one more entry where the certificate is not trusted: refused.
            extra += f"""
[[upstream]]
registrar = "tls:{kamailio.host}:{kamailio.tls_port}"
users = "103"
password = "secret"
"""
        _registers_at_kamailio(honeypot_port_holder, kamailio, registrar, extra, transport)


def _registers_at_kamailio(
    honeypot: Siptrap, kamailio: Kamailio, registrar: str, extra: str, transport: str
) -> None:
    config = (
        domain_config(kamailio.rundir)
        + f"""
[[upstream]]
registrar = "{registrar}"
users = "100-102"
password = "secret"
expires = 10
{extra}"""
    )
    honeypot.config_path.write_text(config)
    kamailio.start()
    try:
        honeypot.start()
        assert wait_until(lambda: kamailio.registered() >= UPSTREAM_USERS, 10), (
            kamailio.kamcmd("ul.dump"),
            [e.get("error") for e in honeypot.events("sip.upstream.failed")],
        )
        registered = honeypot.wait_for(lambda e: e["event"] == "sip.upstream.registered")
        assert {e["user"] for e in registered} >= UPSTREAM_USERS
        if transport != "udp":  # the binding is on siptrap's own connection
            assert f";transport={transport}" in kamailio.kamcmd("ul.dump")
        if transport == "tls":  # the untrusted certificate: never registered
            refused = honeypot.wait_for(lambda e: e.get("user") == "103", 10)
            assert refused and "certificate" in refused[0]["error"], refused
            assert "103" not in kamailio.registered()
        status = subprocess.run(
            [
                str(BIN),
                "status",
                "--config",
                str(honeypot.config_path),
                "--data-dir",
                str(honeypot.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert f"upstream {registrar} 100: registered, expires in" in status, status
        # A call for a registered extension goes through the registration, not the fallback:
        # over TCP and TLS on the connection siptrap opened, answered as direct traffic.
        reply = sip_request("OPTIONS", "101", (kamailio.host, kamailio.port), PHONE)
        assert reply is not None and reply.startswith("SIP/2.0 200"), reply
        assert "Yealink" in reply
        seen = honeypot.wait_for(
            lambda e: e.get("to_user") == "101" and e["event"] == "sip.request.received"
        )
        assert seen[0]["request_uri"].startswith("sip:101@127.0.0.1:")  # the Contact
        assert seen[0]["origin_ip"] == PHONE and seen[0]["transport"] == transport
        if transport != "udp":  # a call too: siptrap's BYE goes back on its connection
            phone = Phone(PHONE, (kamailio.host, kamailio.port))
            try:
                ok = phone.invite("102")
                assert ok is not None and ok.startswith("SIP/2.0 200"), ok
                assert phone.answer_bye(15) is not None, "no BYE came back"
            finally:
                phone.close()
            sent = honeypot.wait_for(lambda e: e["event"] == "sip.request.sent", 5)
            assert any(e["method"] == "BYE" and e["transport"] == transport for e in sent), sent
        # Kamailio restarts and forgets: back within the refresh interval (half of 10 s).
        kamailio.stop()
        kamailio.start()
        assert kamailio.registered() == set()
        t0 = time.time()
        assert wait_until(lambda: kamailio.registered() >= UPSTREAM_USERS, 12)
        print(f"{transport}: registrations back {time.time() - t0:.1f} s after the restart")
    finally:
        honeypot.stop()
        try:
            # A clean stop unregistered them (Expires 0).
            assert kamailio.registered() == set(), kamailio.kamcmd("ul.dump")
            removed = honeypot.events("sip.upstream.removed")
            assert {e["user"] for e in removed} == UPSTREAM_USERS
        finally:
            kamailio.stop()


def test_an_unreachable_registrar_is_a_failure_retried_with_backoff(tmp_path: Path) -> None:
    port = free_port()
    honeypot = Siptrap(
        tmp_path / "data",
        f"""
[[upstream]]
registrar = "udp:127.0.0.1:{port}"
users = "100"
password = "x"
expires = 10
""",
        ["--quiet"],
    )
    honeypot.start()
    try:
        failed = honeypot.wait_for(lambda e: e["event"] == "sip.upstream.failed", 30)
        assert failed and failed[0]["user"] == "100" and failed[0]["retry_in"] >= 2
        # The honeypot goes on answering.
        reply = sip_request("OPTIONS", "100", ("127.0.0.1", honeypot.port), PHONE)
        assert reply is not None and reply.startswith("SIP/2.0 200")
    finally:
        honeypot.stop()


def test_kamailio_action_over_http_jsonrpc_against_real_kamailio(tmp_path: Path) -> None:
    """The shipped configuration with -A WITH_HTTP: the kamailio action's JSON-RPC over
    HTTP (xhttp + jsonrpcs) sets the htable entry Kamailio enforces, deletes it on lift, and
    Kamailio itself lets an entry go at the expiry siptrap gave it."""
    from test_actions import alert, sink_with

    require_tool(KAMAILIO)
    require_tool("kamcmd")
    rundir = tmp_path / "kamailio"
    kamailio = Kamailio(rundir, "sip:127.0.0.1:9", http=True).start()
    lifted, expiring = "127.0.0.8", "127.0.0.9"
    spec = {"kind": "kamailio", "rpc": kamailio.http_rpc, "timeout": 2.0}
    sink, collect = sink_with(tmp_path, [spec], ladder=("try_later",), expire=2.0)
    try:
        sink.write([alert(lifted), alert(expiring)])
        done = collect.wait("response.action.executed", 2)
        assert [e["operation"] for e in done] == ["htable.setxi"] * 2, collect.events
        dump = kamailio.kamcmd("htable.dump", "siptrap")
        assert f"name: {lifted}" in dump and f"name: {expiring}" in dump, dump
        # Kamailio enforces it at once: its own 503 with Retry-After to that source.
        reply = sip_request("OPTIONS", "105", (kamailio.host, kamailio.port), lifted)
        assert status(reply) == 503 and reply is not None and "Retry-After: 300" in reply
        assert sink.lift(lifted)
        assert wait_until(lambda: _rpc_get(kamailio, lifted) is None, 5)  # htable.delete
        assert _rpc_get(kamailio, expiring) == 1  # over HTTP too
    finally:
        sink.close()  # siptrap is gone: what it set must still end at its expiry
    try:
        t0 = time.time()
        assert wait_until(lambda: _rpc_get(kamailio, expiring) is None, 6)
        print(f"entry gone {time.time() - t0:.1f} s after siptrap stopped (expiry 2 s)")
        # Only /RPC is served, and only JSON-RPC there.
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(kamailio.http_rpc.replace("/RPC", "/other"), timeout=5)
        assert info.value.code == 404
    finally:
        kamailio.stop()


def _rpc_get(kamailio: Kamailio, key: str) -> int | None:
    """htable.get over Kamailio's JSON-RPC HTTP transport: the value, or None if absent."""
    import urllib.error
    import urllib.request

    body = {"jsonrpc": "2.0", "method": "htable.get", "params": ["siptrap", key], "id": 1}
    request = urllib.request.Request(kamailio.http_rpc, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            reply = json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # jsonrpcs: a JSON-RPC error's code as the status
        reply = json.loads(exc.read())
        assert "doesn't exist" in reply["error"]["message"], reply
    item = (reply.get("result") or {}).get("item")
    return int(item["value"]) if item else None


def test_behind_kamailio_one_flooding_source_is_shed_and_the_others_are_not(
    tmp_path: Path,
) -> None:
    """The flood guard counts what Kamailio forwards by the source Kamailio names: an
    attacker flooding through it is shed, a phone calling through it at the same time is
    answered every time, and Kamailio itself is never the source shed."""
    require_tool(KAMAILIO)
    rundir = tmp_path / "kamailio"
    rundir.mkdir()
    config = """
[sensor]
personality = "yealink"
[analysis]
proxies = ["127.0.0.5"]
[flood]
per_source_rate = 2
burst = 10
[console]
summary_interval = 1
[[extensions]]
users = "100-109"
"""
    honeypot = Siptrap(tmp_path / "data", config, ["--quiet"])
    honeypot.start()
    kamailio = Kamailio(rundir, f"sip:127.0.0.1:{honeypot.port}")
    try:
        kamailio.start()
        proxy = (kamailio.host, kamailio.port)
        # The phone asks right after the flood went out, while its requests are handled.
        phone: list[int | None] = []

        def calls() -> None:
            phone.extend(status(sip_request("OPTIONS", "104", proxy, PHONE)) for _ in range(5))

        answered = _flood(ATTACKER, proxy, 60, then=calls)
        assert phone == [200] * 5, phone
        assert answered <= 10 + 2 * 3, answered  # its burst, and its rate while it lasted
        shed = honeypot.wait_for(lambda e: e["event"] == "sip.flood.shed" and e["src_ip"], 5)
        assert {e["src_ip"] for e in shed} == {ATTACKER}, shed  # never Kamailio's address
        assert sum(e["count"] for e in shed) >= 60 - answered - 2
    finally:
        kamailio.stop()
        honeypot.stop()


def _flood(source: str, target: tuple[str, int], count: int, then: Any) -> int:
    """`count` OPTIONS from one socket on `source` at once, then `then()`; how many of
    them were answered 200."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        for n in range(count):
            s.sendto(
                (
                    f"OPTIONS sip:10{n % 10}@{target[0]}:{target[1]} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bKflood{n}x{port};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:flood@{source}>;tag=f{n}\r\n"
                    f"To: <sip:10{n % 10}@{target[0]}>\r\n"
                    f"Call-ID: flood-{n}-{port}@{source}\r\n"
                    f"CSeq: 1 OPTIONS\r\nUser-Agent: flooder\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                target,
            )
        then()
        answered = 0
        s.settimeout(1.5)
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                return answered
            answered += data.startswith(b"SIP/2.0 200")
