"""The decision tree's active branches (issue 14): the engine asks for reconnaissance
through the ReconBoard callable, waits (bounded) for the results that come back as
recon.result fields, and concludes "Interactive attack" or "Spoofed Message", whether the
host is up with its SIP port open, and a dial-plan fault when the top Via host is a SIP
server; in passive mode it says what it did not check, as before."""

from __future__ import annotations

from typing import Any

from siptrap.analysis.engine import AnalysisEngine, EngineSettings
from siptrap.analysis.reconnaissance import ReconAsk, ReconBoard, plan
from siptrap.analysis.rules import load_builtin_rules
from siptrap.sip import parse
from test_analysis_engine import alerts_of, engine, finals, request, response, src

ATTACKER = "198.51.100.7"


def active_engine(asks: list[ReconAsk], refuse: str | None = None) -> AnalysisEngine:
    def take(ask: ReconAsk) -> str | None:
        asks.append(ask)
        return refuse

    board = ReconBoard(take, wait=10.0)
    settings = EngineSettings(extensions=frozenset({"100"}))
    return AnalysisEngine(load_builtin_rules(), settings, recon=board)


def result(
    check: str,
    target: str,
    outcome: str,
    detail: dict[str, Any],
    port: int = 0,
    protocol: str | None = None,
) -> dict[str, Any]:
    return {
        "check": check,
        "target": target,
        "outcome": outcome,
        "detail": detail,
        "port": port or None,
        "protocol": protocol,
        "source": ATTACKER,
    }


def invite_with_sdp(contact: str, sdp_ip: str, call_id: str) -> bytes:
    raw = request("INVITE", "555", from_ip=ATTACKER, sdp_ip=sdp_ip, call_id=call_id)
    return raw.replace(
        f"Contact: <sip:alice@{ATTACKER}:5062>".encode(),
        f"Contact: <sip:alice@{contact}:5062>".encode(),
    )


def test_the_plan_names_every_host_of_the_message_once() -> None:
    msg = parse(invite_with_sdp("ua.attacker.example", "203.0.113.50", "p1"))
    ask = plan(msg, src(ATTACKER))
    got = {(p.check, p.target, p.role, p.port, p.transport) for p in ask.probes}
    assert ("sip_probe", "ua.attacker.example", "Contact", 5062, "udp") in got
    assert ("dns", "ua.attacker.example", "Contact", 0, "") in got
    assert ("sip_probe", ATTACKER, "top Via", 5062, "udp") in got
    assert ("port", "203.0.113.50", "SDP connection (c=)", 7078, "udp") in got
    for check in ("dns", "rdap", "geoip", "port", "route", "os"):
        assert (check, ATTACKER, "source", 0, "") in got
    assert len({p.key for p in ask.probes}) == len(ask.probes) == len(got)
    assert ask.source == ATTACKER and ask.call_id == "p1"


def test_interactive_attack_when_a_sip_stack_answers_at_the_contact() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks)
    raw = request("INVITE", "555", from_ip=ATTACKER, call_id="i1")
    eng.request(parse(raw), src(ATTACKER), 1.0)
    eng.response(parse(response(404, raw)), src(ATTACKER), 1.01)
    (ask,) = asks
    assert {p.check for p in ask.probes} >= {"dns", "sip_probe", "port", "rdap"}
    eng.recon_result(
        result(
            "sip_probe",
            ATTACKER,
            "ok",
            {"answered": True, "status": 200, "user_agent": "friendly-scanner"},
            5062,
            "udp",
        ),
        1.2,
    )
    eng.recon_result(
        result("port", ATTACKER, "ok", {"ports": {"tcp/5060": "open", "tcp/5061": "closed"}}), 1.3
    )
    eng.recon_result(result("dns", ATTACKER, "ok", {"names": ["scanner.attacker.example"]}), 1.3)
    (alert,) = finals(alerts_of(eng, 30.0)).values()
    text = "\n".join(alert.conclusions)
    assert (
        "Interactive attack: a SIP stack answers at the Contact 198.51.100.7:5062 "
        "(200, friendly-scanner)"
    ) in text
    assert "Host 198.51.100.7 is up and its SIP port tcp/5060 is open" in text
    assert "Checked dns of 198.51.100.7: ok (names=scanner.attacker.example)" in text
    assert "Not checked: rdap of 198.51.100.7 (no result in time)" in text
    assert "Spoofed Message" not in text and "Not checked (passive mode)" not in text
    assert "spoofing" not in alert.categories


def test_spoofed_message_when_names_do_not_resolve_and_nothing_answers() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks)
    raw = invite_with_sdp("nowhere.invalid-name.example", "203.0.113.66", "s1")
    eng.request(parse(raw), src(ATTACKER), 1.0)
    eng.response(parse(response(404, raw)), src(ATTACKER), 1.01)
    eng.recon_result(
        result(
            "dns",
            "nowhere.invalid-name.example",
            "failed",
            {"error": "NXDOMAIN: the name does not exist"},
        ),
        1.1,
    )
    eng.recon_result(
        result(
            "sip_probe",
            "nowhere.invalid-name.example",
            "refused_by_guard",
            {"reason": "the name does not resolve"},
            5062,
            "udp",
        ),
        1.1,
    )
    eng.recon_result(
        result("sip_probe", ATTACKER, "timeout", {"answered": False}, 5062, "udp"), 1.2
    )
    eng.recon_result(
        result(
            "port", "203.0.113.66", "failed", {"ports": {"udp/7078": "unreachable"}}, 7078, "udp"
        ),
        1.2,
    )
    (alert,) = finals(alerts_of(eng, 30.0)).values()
    text = "\n".join(alert.conclusions)
    assert "Spoofed Message" in alert.conclusions
    assert "Spoofed: the Contact name 'nowhere.invalid-name.example' does not resolve" in text
    assert "spoofing" in alert.categories
    assert "Interactive attack" not in text
    assert "Media port of 203.0.113.66: udp/7078 unreachable" in text


def test_the_tree_waits_for_results_but_not_for_ever() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks)
    raw = request("INVITE", "555", from_ip=ATTACKER, call_id="w1")
    eng.request(parse(raw), src(ATTACKER), 1.0)
    eng.response(parse(response(404, raw)), src(ATTACKER), 1.01)
    eng.tick(8.0)  # past the ACK wait: results are still missing, the dialog waits
    assert "w1" in eng.watches and not eng.take()
    eng.recon_result(
        result("sip_probe", ATTACKER, "ok", {"answered": True, "status": 200}, 5062, "udp"), 8.1
    )
    eng.tick(11.5)  # the wait (10 s after the ask) is over: settled with what came
    assert "w1" not in eng.watches
    (alert,) = eng.take()
    assert any(c.startswith("Interactive attack") for c in alert.conclusions)


def test_passive_mode_says_what_it_did_not_check() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks, refuse="passive mode")
    raw = request("INVITE", "555", from_ip=ATTACKER, call_id="p2")
    eng.request(parse(raw), src(ATTACKER), 1.0)
    (alert,) = finals(alerts_of(eng, 30.0)).values()
    assert any(
        c.startswith("Not checked (passive mode): whether 198.51.100.7 is up")
        for c in alert.conclusions
    )
    assert not any(c.startswith("Checked ") for c in alert.conclusions)
    asks.clear()
    full = active_engine(asks, refuse="recon queue full")
    full.request(
        parse(request("INVITE", "555", from_ip=ATTACKER, call_id="p3")), src(ATTACKER), 1.0
    )
    (alert,) = finals(alerts_of(full, 30.0)).values()
    assert any(c.startswith("Not checked (recon queue full)") for c in alert.conclusions)


def test_a_sip_server_at_the_top_via_makes_it_a_dial_plan_fault() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks)
    raw = request("INVITE", "555", from_ip=ATTACKER, call_id="d1").replace(
        f"Via: SIP/2.0/UDP {ATTACKER}:5062".encode(), b"Via: SIP/2.0/UDP 203.0.113.5:5060"
    )
    eng.request(parse(raw), src(ATTACKER), 1.0)
    eng.recon_result(
        result(
            "sip_probe",
            "203.0.113.5",
            "ok",
            {"answered": True, "status": 200, "server": "Kamailio"},
            5060,
            "udp",
        ),
        1.1,
    )
    (alert,) = finals(alerts_of(eng, 30.0)).values()
    assert "dialplan_fault" in alert.categories and "direct_attack" not in alert.categories
    assert any("top Via host 203.0.113.5 is a SIP server" in c for c in alert.conclusions)
    # without recon the same INVITE is a direct attack (the engine's passive verdict)
    plain = engine(extensions=frozenset({"100"}))
    plain.request(parse(raw), src(ATTACKER), 1.0)
    (alert,) = finals(alerts_of(plain, 30.0)).values()
    assert alert.category == "direct_attack"


def test_results_known_are_not_asked_for_again() -> None:
    asks: list[ReconAsk] = []
    eng = active_engine(asks)
    first = request("INVITE", "555", from_ip=ATTACKER, call_id="k1")
    eng.request(parse(first), src(ATTACKER), 1.0)
    for probe in asks[0].probes:
        eng.recon_result(
            result(probe.check, probe.target, "ok", {}, probe.port, probe.transport or None), 1.5
        )
    eng.request(parse(request("INVITE", "556", from_ip=ATTACKER, call_id="k2")), src(ATTACKER), 2.0)
    assert len(asks) == 1  # everything the second INVITE calls for is known


def test_in_passive_mode_the_board_plans_nothing() -> None:
    asks: list[ReconAsk] = []
    mode = ["passive"]
    board = ReconBoard(
        lambda ask: asks.append(ask) or None,
        idle=lambda: "passive mode" if mode[0] == "passive" else None,
    )
    eng = AnalysisEngine(
        load_builtin_rules(), EngineSettings(extensions=frozenset({"100"})), recon=board
    )
    eng.request(parse(request("INVITE", "555", from_ip=ATTACKER, call_id="n1")), src(ATTACKER), 1.0)
    assert asks == [] and not board.asks
    (alert,) = finals(alerts_of(eng, 30.0)).values()
    assert any(c.startswith("Not checked (passive mode)") for c in alert.conclusions)
    mode[0] = "active"  # switched at runtime: the next INVITE is asked about
    eng.request(
        parse(request("INVITE", "555", from_ip=ATTACKER, call_id="n2")), src(ATTACKER), 40.0
    )
    assert len(asks) == 1 and asks[0].call_id == "n2"
