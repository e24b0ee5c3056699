"""Behaviour modes declared by rule files (`type = Mode`, the paper's "customized modes"):
how they are read and refused, how they combine with passive, active and `[recon]
modes`, and that the recon service and the board run only what the mode in force names
(its checks, on its targets), with real probes of an allowed loopback lab host."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from siptrap.analysis.modes import ACTIVE, PASSIVE, ModeError, mode_table
from siptrap.analysis.outcome import Source
from siptrap.analysis.reconnaissance import Probe, ReconAsk, ReconBoard, check_lines
from siptrap.analysis.rules import RuleError, load_builtin_rules, load_rules, parse_rule_file
from siptrap.events.record import Event
from siptrap.recon.service import Reconnaissance
from siptrap.recon.settings import ReconConfig, check_recon
from siptrap.sip import parse
from siptrap.sip.build import build_request

LAB = "127.0.0.2"


def test_a_mode_section_is_read_with_its_checks_and_targets() -> None:
    rules, modes = parse_rule_file(
        """
[rule_1]
type = Classification
context = INVITE
condition = %Tool != ""
action = add "tool" CONCLUSIONS

[Careful]
type = mode
checks = dns, "geoip"
targets = source, via
description = "lookups of the source and the Via"

[everything_on_contact]
type = Mode
checks = all
targets = contact
""",
        "m.rules",
    )
    assert [r.name for r in rules] == ["rule_1"]
    careful, contact = modes
    assert careful.name == "Careful" and careful.checks == {"dns", "geoip"}
    assert careful.targets == {"source", "via"} and careful.line == 8
    assert careful.description == "lookups of the source and the Via"
    assert contact.checks == ACTIVE.checks and contact.targets == {"contact"}
    assert careful.skips(Probe("dns", "1.2.3.4")) is None
    assert careful.skips(Probe("dns", "x.example", "top Via")) is None
    assert "not a target" in (careful.skips(Probe("dns", "x.example", "Contact")) or "")
    assert "not a check" in (careful.skips(Probe("port", "1.2.3.4")) or "")
    assert contact.skips(Probe("sip_probe", "h.example", "Contact", 5060, "udp")) is None
    assert contact.skips(Probe("port", "1.2.3.4", "SDP connection (c=)", 4000, "udp"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[m]\ntype = Mode\ntargets = source\n", "needs a 'checks' key"),
        ("[m]\ntype = Mode\nchecks = dns, nmap\n", "unknown check 'nmap'"),
        ("[m]\ntype = Mode\nchecks = dns\ntargets = pbx\n", "unknown target 'pbx'"),
        ("[m]\ntype = Mode\nchecks = dns\ncontext = INVITE\n", "not used by Mode"),
        ("[active]\ntype = Mode\nchecks = dns\n", "built in and cannot be redefined"),
        (
            "[m]\ntype = Classification\ncontext = INVITE\nchecks = dns\naction = add x C\n",
            "not used by Classification",
        ),
    ],
)
def test_bad_mode_sections_are_refused_with_file_and_line(text: str, error: str) -> None:
    with pytest.raises(RuleError, match=error) as info:
        parse_rule_file(text, "bad.rules")
    assert info.value.file == "bad.rules" and info.value.line >= 1


def test_mode_names_are_unique_across_files_and_with_recon_modes(tmp_path: Path) -> None:
    (tmp_path / "a.rules").write_text("[m]\ntype = Mode\nchecks = dns\n")
    (tmp_path / "b.rules").write_text("[m]\ntype = Mode\nchecks = geoip\n")
    with pytest.raises(RuleError, match="already defined in"):
        load_rules([tmp_path])
    modes = load_rules([tmp_path / "a.rules"]).modes
    with pytest.raises(ModeError, match="defined twice"):
        mode_table(("m=port",), modes)
    table = mode_table(("old=port,route",), modes)
    assert set(table) == {"passive", "active", "old", "m"}
    assert table["passive"] is PASSIVE and not PASSIVE.sends
    assert table["old"].checks == {"port", "route"} and table["old"].source == "[recon] modes"
    # the config check: a rule mode is known, a typo is not
    assert check_recon(ReconConfig(), "m", lambda: modes) is None
    assert "sensor.mode" in (check_recon(ReconConfig(), "n", lambda: modes) or "")
    assert "sensor.mode" in (check_recon(ReconConfig(), "m") or "")  # no rule files asked


def test_the_builtin_rules_ship_two_modes() -> None:
    modes = {m.name: m for m in load_builtin_rules().modes}
    assert modes["lookups"].checks == {"dns", "rdap", "geoip", "os"}
    assert (
        modes["source-only"].targets == {"source"} and modes["source-only"].checks == ACTIVE.checks
    )


def invite_from(host: str) -> bytes:
    return build_request(
        "INVITE",
        "sip:555@honeypot.example",
        via=f"SIP/2.0/UDP {host}:5060;branch=z9hG4bKmode",
        from_=f"<sip:100@{host}>;tag=m",
        to="<sip:555@honeypot.example>",
        call_id="mode-call",
        cseq=1,
        contact="<sip:100@contact.example.com:5060>",
        headers=(("Content-Length", "0"),),
    )


def test_the_board_asks_only_for_what_the_mode_runs() -> None:
    _rules, modes = parse_rule_file("[q]\ntype = Mode\nchecks = dns,sip_probe\ntargets = contact")
    (mode,) = modes
    asked: list[ReconAsk] = []
    board = ReconBoard(lambda a: asked.append(a) or None, wants=lambda p: mode.skips(p) is None)
    board.ask(parse(invite_from("198.51.100.7")), Source("198.51.100.7", 5060, "udp"), 0.0)
    (ask,) = asked
    assert {(p.check, p.role) for p in ask.probes} == {("dns", "Contact"), ("sip_probe", "Contact")}
    view = board.view("mode-call")
    assert view is not None and len(view.left_out) > 5
    lines = check_lines(view)
    assert lines[-1].startswith("Not checked (not in the mode in force): ")
    assert "rdap of source" in lines[-1]


def test_the_service_runs_the_mode_in_force_on_a_lab_host() -> None:
    _rules, modes = parse_rule_file(
        "[tcp_only]\ntype = Mode\nchecks = port\ntargets = source\n"
        "[sdp_only]\ntype = Mode\nchecks = port\ntargets = sdp\n"
    )

    async def main() -> list[Event]:
        with socket.socket() as s:
            s.bind((LAB, 0))
            closed = s.getsockname()[1]
        events: list[Event] = []
        config = ReconConfig(
            allow=(f"{LAB}/32",), ports=(f"tcp/{closed}",), rate=100, target_rate=50
        )
        recon = Reconnaissance(config, events.append, "t", "tcp_only", modes=modes)
        await recon.start()
        probes = (Probe("port", LAB), Probe("port", LAB, "SDP connection (c=)", closed, "tcp"))
        assert recon.submit(ReconAsk(LAB, probes, "a")) is None
        while len(events) < 2:
            await asyncio.sleep(0.02)
        assert recon.set_mode("sdp_only") == "tcp_only"
        with pytest.raises(ValueError, match="unknown mode"):
            recon.set_mode("loud")
        assert recon.submit(ReconAsk(LAB, probes, "b")) is None  # the SDP probe: new
        while len(events) < 3:
            await asyncio.sleep(0.02)
        with pytest.raises(ValueError, match="mode in force"):
            recon.set_modes(())
        await recon.aclose()
        return events

    first, second, third = asyncio.run(asyncio.wait_for(main(), 20))
    assert first.fields["check"] == "port" and first.fields["port"] is None
    assert first.fields["outcome"] == "ok"
    assert list(first.fields["detail"]["ports"].values()) == ["closed"]
    assert second.fields["outcome"] == "skipped"
    assert "not a target of mode tcp_only" in second.fields["detail"]["reason"]
    assert third.fields["outcome"] == "ok" and third.fields["protocol"] == "tcp"


def test_the_readme_mode_example_is_the_builtin_lookups_mode() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in readme.split("```ini\n")[1:] if "type = Mode" in b.split("```")[0]]
    assert len(blocks) == 1
    _rules, (mode,) = parse_rule_file(blocks[0].split("```")[0], "README.md")
    builtin = {m.name: m for m in load_builtin_rules().modes}["lookups"]
    assert (mode.name, mode.checks, mode.targets) == (
        builtin.name,
        builtin.checks,
        builtin.targets,
    )
