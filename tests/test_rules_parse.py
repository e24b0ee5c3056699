"""Rule files: the Artemisa paper's rules load unchanged, errors are refused with file, line
and reason, and Classification/Fingerprinting rules run on messages real tools sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siptrap.analysis.evaluate import (
    Evaluator,
    Source,
    SystemArgumentRefused,
    expand_argv,
    ip_network_of,
    scope_key,
)
from siptrap.analysis.rules import (
    Add,
    Assign,
    Call,
    ContextRef,
    Equals,
    In,
    Return,
    RuleError,
    Str,
    System,
    Var,
    Word,
    builtin_rules_dir,
    load_builtin_rules,
    load_rules,
    parse_rules,
)
from siptrap.sip import parse

DATA = Path(__file__).parent / "data"
RULES = DATA / "rules"
TOOLS = DATA / "tools"
SRC = Source("192.0.2.7", 5062)


def tool_msg(name: str):
    return parse((TOOLS / name).read_bytes())


def one_rule(text: str):
    (rule,) = parse_rules(text, "t.rules")
    return rule


def message(from_user: str = "alice", ua: str | None = None, method: str = "INVITE") -> bytes:
    """A request as an ordinary phone would write it; the From user is a URI user part."""
    agent = f"User-Agent: {ua}\r\n" if ua else ""
    return (
        f"{method} sip:200@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKq8x2Lm0P;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{from_user}@192.0.2.7>;tag=a8F3kq\r\n"
        "To: <sip:200@192.0.2.1>\r\n"
        "Call-ID: 9e1c6f0a-3b7d@192.0.2.7\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:alice@192.0.2.7:5062>\r\n"
        f"{agent}Content-Length: 0\r\n\r\n"
    ).encode()


# -- the paper's rules -------------------------------------------------------------------------
def test_paper_rules_load_unchanged():
    rules = load_rules([RULES / "paper.rules"])
    assert [r.name for r in rules] == ["rule_1", "rule_2", "rule_3", "rule_4"]
    r1, r2, r3, r4 = rules.rules
    assert r1.type == "Classification" and r1.context == ("INVITE",)
    assert r1.pre_actions == (Assign("a", Call("Check_Fingerprint")),)
    assert r1.condition == In(Var("a"), "FINGERPINTS")
    assert r1.actions == (Add(Str("Tool identified as: %a"), "CONCLUSIONS"),)
    assert r2.type == "Fingerprinting"
    assert r2.regex is not None and r2.regex.pattern == "friendly-scanner"
    assert r2.where is not None and (r2.where.kind, r2.where.name) == ("header", "user-agent")
    assert r2.actions == (Return(Str("SIPVicious")),) and r2.returns == "SIPVicious"
    assert (r3.type, r3.scope, r3.timer) == ("Correlation.EventInWindow", "DIALOG", 5.0)
    assert r3.condition == Equals(ContextRef(), Word("ACK"))
    assert r3.actions == () and r3.actions_if_false == (
        Add(Str("no ACK is received"), "CONCLUSIONS"),
    )
    assert (r4.scope, r4.timer, r4.threshold) == ("IPSrc", 1.0, 3)
    assert r4.actions == (System(("bash", "./on_flood.sh", "%IPSrc")),)
    assert (r1.line, r2.line, r3.line, r4.line) == (4, 12, 19, 28)
    assert r1.line_of("action") == 9


def _sections(text: str) -> dict[str, str]:
    found = re.findall(r"^\[(\w+)\]\n(.*?)(?=\n\n|\n#|\Z)", text, re.S | re.M)
    return {name: body for name, body in found}


def test_builtin_paper_rules_keep_the_papers_text_except_rule_4():
    paper = _sections((RULES / "paper.rules").read_text(encoding="utf-8"))
    shipped = _sections((builtin_rules_dir() / "paper.rules").read_text(encoding="utf-8"))
    for name in ("rule_1", "rule_2", "rule_3"):
        assert shipped[name] == paper[name]
    assert "system" not in shipped["rule_4"]  # adapted: the paper's script is not shipped


def test_builtin_rules_load_and_cover_every_method():
    rules = load_builtin_rules()
    assert len(rules.by_type("Fingerprinting")) >= 10
    assert rules.get("tool_identified") is not None
    for method in ("OPTIONS", "REGISTER", "INVITE", "BYE"):
        assert rules.for_context(method, "Classification")


def test_paper_fifth_rule_keeps_system_as_argv():
    (rule,) = load_rules([RULES / "paper_sipvicious.rules"]).rules
    assert rule.type == "Classification"  # written 'classification' in the paper
    assert rule.condition == Equals(Var("a"), Str("SIPVicious"))
    assert rule.actions == (
        System(
            (
                "python",
                "/sipvicious/svcrash.py",
                "-d",
                "SipMsg.Contact.Ip",
                "-p",
                "SipMsg.Contact.Port",
            )
        ),
    )


def test_syntax_details():
    rule = one_rule(
        "# comment\n; another\n[r]\nTYPE = classification\ncontext = invite, options\n"
        "description = 100% literal, no interpolation: %(x)s\n"
        "action = add \\\n   'a' \\\n   CONCLUSIONS ; add \"b;c\" CONCLUSIONS\n"
    )
    assert rule.context == ("INVITE", "OPTIONS")
    assert rule.description == "100% literal, no interpolation: %(x)s"
    assert rule.actions == (Add(Str("a"), "CONCLUSIONS"), Add(Str("b;c"), "CONCLUSIONS"))


def test_for_context_keeps_file_order_and_any():
    rules = load_rules([RULES / "paper.rules", builtin_rules_dir() / "fuzzing.rules"])
    invite = rules.for_context("INVITE")
    assert invite[0].name == "rule_1"
    assert [r.name for r in invite].index("rule_4") < [r.name for r in invite].index("fuzz_via")
    assert {r.name for r in rules.for_context("FOO")} == {
        r.name for r in rules if "ANY" in r.context
    }
    assert all(r.type == "Fingerprinting" for r in rules.for_context("INVITE", "Fingerprinting"))


# -- errors: file, line, reason ----------------------------------------------------------------
CL = "[r]\ntype = Classification\ncontext = INVITE\n"  # lines 1-3
FP = "[r]\ntype = Fingerprinting\ncontext = ANY\n"
TH = "[r]\ntype = Correlation.ThresholdInWindow\ncontext = INVITE\nscope = IPSrc\n"  # 1-4
EV = "[r]\ntype = Correlation.EventInWindow\ncontext = INVITE\nscope = DIALOG\n"
ADD = "action = add 'x' CONCLUSIONS\n"
RET = "action = return x\n"

BAD = [
    ("[r]\ntype = Classifier\ncontext = INVITE\n" + ADD, 2, "unknown rule type"),
    (CL + "colour = red\n", 4, "unknown key"),
    (CL + "context = ACK\n", 4, "given twice"),
    ("[r]\ntype = Classification\n[r]\n", 3, "defined twice"),
    ("type = Classification\n", 1, "outside of any"),
    ("[r x]\n", 1, "bad section header"),
    (CL + "this is not a key\n", 4, "key = value"),
    (CL + "action =\n", 4, "has no value"),
    (CL + "action = delete 'x' CONCLUSIONS\n", 4, "unknown operator 'delete'"),
    (CL + "condition = %IPSrc > 3\n" + ADD, 4, "unknown operator '>'"),
    (CL + "condition = %IPSrc in\n" + ADD, 4, "bad condition"),
    (FP + "re = '(unclosed'\nwhere = From\n" + RET, 4, "does not compile"),
    (FP + "re = '(a+)+$'\nwhere = From\n" + RET, 4, "nested repeat"),
    (FP + "re = '(a)\\1'\nwhere = From\n" + RET, 4, "backreferences"),
    (FP + "re = 'x'\n" + RET, 1, "needs a 'where' key"),
    (EV + "condition = context == ACK\n" + ADD, 1, "needs a 'timer' key"),
    (CL + "condition = %IPSrc == 'x'\n", 1, "no action"),
    (CL + "condition = %a == 'x'\n" + ADD, 4, "%a is used before"),
    (CL + "action = add 'seen %who' CONCLUSIONS\n", 4, "%who is used before"),
    (CL + "action = system '/bin/echo %nobody'\n", 4, "%nobody is used before"),
    (TH + "timer = -1\nthreshold = 3\n" + ADD, 5, "timer must be positive"),
    (TH + "timer = 0\nthreshold = 3\n" + ADD, 5, "timer must be positive"),
    (TH + "timer = soon\nthreshold = 3\n" + ADD, 5, "timer must be a positive number"),
    (TH + "timer = nan\nthreshold = 3\n" + ADD, 5, "timer must be positive"),
    (TH + "timer = 1\nthreshold = 2.5\n" + ADD, 6, "threshold must be a positive whole"),
    (TH + "timer = 1\nthreshold = 0\n" + ADD, 6, "threshold must be positive"),
    (CL.replace("INVITE", "INVIET") + ADD, 3, "unknown context"),
    (TH.replace("IPSrc", "Country") + "timer = 1\nthreshold = 3\n" + ADD, 4, "unknown scope"),
    (EV + "timer = 5\ncondition = context == AKC\n" + ADD, 6, "unknown context 'AKC'"),
    (CL + "pre-action = assign %a Ping_Host()\n" + ADD, 4, "unknown operation Ping_Host"),
    (CL + "action = add 'x' FINGERPRINTS\n", 4, "read-only"),
    (CL + "action = add 'x' conclusions\n", 4, "not a collection name"),
    (CL + "action = system '%IPSrc --help'\n", 4, "must be fixed text"),
    (CL + "action = system 'a \"b'\n", 4, "cannot be split"),
    (CL + "action = add 'x CONCLUSIONS\n", 4, "not closed"),
    (FP + "re = 'x'\nwhere = From\n" + ADD, 6, "one return"),
    (FP + "re = 'x'\nwhere = Via.tag\n" + RET, 5, "unknown part 'tag'"),
    (CL + "condition = bad_viaa in DEFECTS\n" + ADD, 4, "unknown defect name"),
    (CL + "threshold = 3\n" + ADD, 4, "not used by Classification"),
    ("[r]\ncontext = ANY\n" + ADD, 1, "has no type"),
    (CL + "action = system 'echo SipMsg.Contact.Colour'\n", 4, "unknown part"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD, ids=[b[2] for b in BAD])
def test_errors_name_file_line_and_reason(tmp_path, text, line, reason):
    path = tmp_path / "bad.rules"
    path.write_text("# leading comment\n\n" + text, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules([path])
    err = info.value
    assert err.file == str(path)
    assert err.line == line + 2
    assert reason in err.reason
    assert str(err).startswith(f"{path}:{line + 2}: ")


def test_collection_never_filled_is_refused_at_the_condition_line(tmp_path):
    path = tmp_path / "c.rules"
    path.write_text(
        "[r]\ntype = Classification\ncontext = INVITE\n\ncondition = %IPSrc in BLACKLIST\n"
        "action = add 'x' CONCLUSIONS\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as info:
        load_rules([path])
    assert (info.value.line, "BLACKLIST is never filled" in info.value.reason) == (5, True)
    other = tmp_path / "d.rules"
    other.write_text("[s]\ntype = Classification\ncontext = ANY\naction = add %IPSrc BLACKLIST\n")
    assert len(load_rules([path, other])) == 2  # filled by a rule in another file


def test_duplicate_rule_across_files_names_the_second_file(tmp_path):
    first, second = tmp_path / "a.rules", tmp_path / "b.rules"
    text = "\n[dup]\ntype = Classification\ncontext = ANY\naction = add 'x' CONCLUSIONS\n"
    first.write_text(text)
    second.write_text(text)
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])  # a directory: its *.rules, sorted
    assert (info.value.file, info.value.line) == (str(second), 2)
    assert str(first) in info.value.reason


def test_unreadable_file_is_a_rule_error(tmp_path):
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path / "missing.rules"])
    assert info.value.line == 0 and "cannot read" in info.value.reason


# -- evaluation on real messages ---------------------------------------------------------------
def test_rule_1_names_sipvicious_on_svmap_invite():
    ev = Evaluator(load_rules([RULES / "paper.rules"]))
    out = ev.classify(tool_msg("svmap_invite.sip"), SRC)
    assert out.conclusions == ("Tool identified as: SIPVicious",)
    assert out.fired == ("rule_1",) and out.tools == ("SIPVicious",)


def test_rule_1_falls_back_to_the_catalogue_for_sipp():
    ev = Evaluator(load_rules([RULES / "paper.rules"]))
    assert ev.check_fingerprint(tool_msg("sipp_invite.sip"), SRC) == "SIPp"
    assert ev.classify(tool_msg("sipp_invite.sip"), SRC).conclusions == (
        "Tool identified as: SIPp",
    )


def test_rule_1_is_silent_for_an_ordinary_phone():
    ev = Evaluator(load_rules([RULES / "paper.rules"]))
    out = ev.classify(parse(message(ua="Linphone Desktop/5.2.4 (belle-sip/5.2.0)")), SRC)
    assert out.conclusions == () and out.fired == () and out.tools == ()


def test_rule_1_only_listens_to_invite():
    ev = Evaluator(load_rules([RULES / "paper.rules"]))
    assert ev.classify(tool_msg("svmap_options.sip"), SRC).conclusions == ()


def test_fingerprinting_rules_in_file_order_on_real_messages(tmp_path):
    path = tmp_path / "fp.rules"
    path.write_text(
        "[by_taghex]\ntype = Fingerprinting\ncontext = ANY\n"
        "re = '^7f000001[0-9a-f]{4}\\x01'\nwhere = From.taghex\n"
        'action = return "svmap-localhost"\n'
        "[by_ua]\ntype = Fingerprinting\ncontext = ANY\nre = 'friendly'\nwhere = UserAgent\n"
        'action = return "SIPVicious"\n'
        "[by_sdp]\ntype = Fingerprinting\ncontext = INVITE\nre = '^svwar$'\nwhere = sdp.s\n"
        'action = return "svwar"\n'
        "[by_message]\ntype = Fingerprinting\ncontext = OPTIONS\nre = 'Accept: text/plain'\n"
        'where = message\naction = return "sipsak"\n'
    )
    ev = Evaluator(load_rules([path]))
    assert ev.check_fingerprint(tool_msg("svmap_options.sip"), SRC) == "svmap-localhost"
    assert ev.check_fingerprint(tool_msg("svcrack_register_first.sip"), SRC) == "SIPVicious"
    assert ev.check_fingerprint(tool_msg("svwar_invite.sip"), SRC) == "SIPVicious"  # by_ua first
    assert ev.check_fingerprint(tool_msg("sipsak_options.sip"), SRC) == "sipsak"
    assert ev.check_fingerprint(tool_msg("svwar_invite.sip"), SRC, "ACK") == "SIPVicious"


def test_builtin_rules_classify_tool_traffic_and_malformed_messages():
    ev = Evaluator(load_builtin_rules())
    for name, tool in [
        ("svmap_compact_options.sip", "SIPVicious"),
        ("svcrack_register_guess.sip", "SIPVicious"),
        ("sipsak_options.sip", "sipsak"),
        ("sipp_bye.sip", "SIPp"),
    ]:
        assert f"Tool identified as: {tool}" in ev.classify(tool_msg(name), SRC).conclusions
    bad = parse((DATA / "rfc4475" / "badvers.dat").read_bytes())
    assert any("SIP version" in c for c in ev.classify(bad, SRC).conclusions)
    assert ev.classify(parse(message(ua="Yealink SIP-T46S 66.85.0.5")), SRC).conclusions == ()


def test_user_collections_persist_across_messages_and_are_bounded():
    rules = parse_rules(
        "[seen]\ntype = Classification\ncontext = ANY\ncondition = %FromUser in CALLERS\n"
        "action = add 'again: %FromUser' CONCLUSIONS\naction-if-false = add %FromUser CALLERS\n"
        "[new]\ntype = Classification\ncontext = ANY\ncondition = %FromUser not in CALLERS\n"
        "action = add 'impossible' CONCLUSIONS\n"
    )
    from siptrap.analysis.rules import RuleSet

    ev = Evaluator(RuleSet.of(rules), max_collection=2)
    run = [ev.classify(parse(message(u)), SRC).conclusions for u in ("a", "a", "b", "c", "a")]
    assert run == [(), ("again: a",), (), (), ()]  # 'a' was evicted by b and c


def test_not_equal_and_field_operands():
    rule = one_rule(
        "[r]\ntype = Classification\ncontext = INVITE\ncondition = SipMsg.From.Ip != %IPSrc\n"
        "action = add 'From host differs from the source' CONCLUSIONS\n"
    )
    from siptrap.analysis.rules import RuleSet

    ev = Evaluator(RuleSet.of([rule]))
    assert ev.classify(parse(message()), Source("192.0.2.7")).conclusions == ()
    assert ev.classify(parse(message()), Source("203.0.113.9")).fired == ("r",)


def test_correlation_building_blocks_on_paper_rule_3():
    rules = load_rules([RULES / "paper.rules"])
    rule_3 = rules.get("rule_3")
    ev = Evaluator(rules)
    invite, ack, bye = (tool_msg(f"sipp_{n}.sip") for n in ("invite", "ack", "bye"))
    assert ev.check(rule_3, ack, SRC) is True
    assert ev.check(rule_3, bye, SRC) is False
    assert ev.fire(rule_3, invite, SRC, if_false=True).conclusions == ("no ACK is received",)
    assert ev.fire(rule_3, invite, SRC).conclusions == ()  # rule_3 has no 'action'
    assert scope_key("DIALOG", invite, SRC) == scope_key("DIALOG", ack, SRC) == invite.call_id
    assert scope_key("IPNet", invite, Source("198.51.100.77")) == "198.51.100.0/24"
    assert ip_network_of("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert scope_key("FromUser", invite, SRC) == "sipp"
    assert scope_key("UserAgent", invite, SRC) is None


# -- system actions stay inert argument vectors ------------------------------------------------
HOSTILE = ["; rm -rf /", "$(id)", "`id`", "a b c", "x' ; echo 'y", "&& reboot", "*"]


def _system_rule(command: str):
    from siptrap.analysis.rules import RuleSet

    text = f"[r]\ntype = Classification\ncontext = ANY\naction = system {command}\n"
    return RuleSet.of(parse_rules(text))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_single_arguments(value):
    from urllib.parse import quote

    ev = Evaluator(_system_rule('"/usr/local/bin/block --user %FromUser --ip=%IPSrc"'))
    out = ev.classify(parse(message(quote(value, safe=""))), SRC)
    assert out.commands[0].argv == (
        "/usr/local/bin/block",
        "--user",
        value,
        "--ip=192.0.2.7",
    )
    assert out.problems == ()


def test_field_references_expand_to_one_argument():
    ev = Evaluator(load_rules([RULES / "paper_sipvicious.rules"]))
    out = ev.classify(tool_msg("svmap_invite.sip"), SRC)
    assert out.commands[0].argv == (
        "python",
        "/sipvicious/svcrash.py",
        "-d",
        "127.0.0.1",
        "-p",
        "5060",
    )
    assert ev.classify(tool_msg("sipp_invite.sip"), SRC).commands == ()  # not SIPVicious


@pytest.mark.parametrize("value", ["--output=/etc/passwd", "-rf", "-"])
def test_values_that_look_like_options_are_refused(value):
    ev = Evaluator(_system_rule("/usr/local/bin/block %FromUser"))
    out = ev.classify(parse(message(value)), SRC)
    assert out.commands == ()
    assert len(out.problems) == 1 and "refused" in out.problems[0]
    # an admin-fixed prefix makes the same value harmless: it cannot start the argument
    fixed = Evaluator(_system_rule("/usr/local/bin/block --user=%FromUser"))
    assert fixed.classify(parse(message(value)), SRC).commands[0].argv[1] == f"--user={value}"


def test_control_characters_and_huge_values_are_refused():
    system = System(("/bin/echo", "%v"))
    for bad in ("a\nb", "a\x00b", "x" * 5000):
        with pytest.raises(SystemArgumentRefused):
            expand_argv(system, {"v": bad})
    expanded = expand_argv(System(("/bin/echo", "100%%", "id=%v%x")), {"v": "-a"})
    assert expanded == ("/bin/echo", "100%", "id=-ax")  # %v% closes a name a letter follows


def test_paper_rule_4_argv_with_a_hostile_source_value():
    rule_4 = load_rules([RULES / "paper.rules"]).get("rule_4")
    (action,) = rule_4.actions
    assert isinstance(action, System)
    assert expand_argv(action, {"IPSrc": "1.2.3.4; rm -rf /"}) == (
        "bash",
        "./on_flood.sh",
        "1.2.3.4; rm -rf /",
    )
    with pytest.raises(SystemArgumentRefused):
        expand_argv(action, {"IPSrc": "--output=/etc/passwd"})


# -- fields rules and fingerprints read ----------------------------------------------------------
def test_fields_on_real_messages():
    from siptrap.analysis.fields import field_values, parse_field

    svwar = tool_msg("svwar_invite.sip")

    def values(name, msg=svwar):
        return field_values(parse_field(name), msg)

    assert values("SipMessage.UserAgent") == values("agent") == ["friendly-scanner"]
    assert values("sdp.s") == values("sdp.session") == ["svwar"]
    assert values("sdp.m") == ["audio 6060 RTP/AVP 0 8"]
    assert values("From.taghex")[0].startswith("248158103\x01")
    assert values("f.user") == values("From.user") == ["248158103"]
    assert values("Via.branch")[0].startswith("z9hG4bK-")
    assert values("header-order")[0].startswith("Via,Max-Forwards,To,From,User-Agent,Call-ID")
    assert values("start-line") == ["INVITE sip:248158103@127.0.0.1 SIP/2.0"]
    assert values("method") == ["INVITE"] and values("status") == []
    compact = tool_msg("svmap_compact_options.sip")
    assert values("Contact.port", compact) == ["5060"]
    assert values("SipMsg.Contact.Ip", compact) == ["127.0.0.1"]
    assert values("User-Agent", compact) == [] and values("body", compact) == []
    assert values("sipp_tag", tool_msg("sipp_invite.sip")) == []  # an absent header
    bad = parse((DATA / "rfc4475" / "badvers.dat").read_bytes())
    assert "bad_version" in values("defects", bad)[0].split()


def test_evaluation_never_raises_on_torture_messages():
    ev = Evaluator(load_builtin_rules())
    for path in sorted((DATA / "rfc4475").glob("*.dat")):
        msg = parse(path.read_bytes())
        out = ev.classify(msg, SRC)
        assert isinstance(out.conclusions, tuple)
