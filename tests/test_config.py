"""The configuration: listen specs, sections and keys, types, extensions, personalities,
and `render()` (what `siptrap config show` prints) loading back to the same Config."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from siptrap.config import (
    DEFAULT_LISTEN,
    SECTIONS,
    Config,
    Listen,
    config_from_dict,
    load_config,
    parse_listen,
    render,
)
from siptrap.endpoint.extensions import MAX_EXTENSIONS, expand_users
from siptrap.endpoint.personality import BUILTIN
from siptrap.settings import ConfigError

# -- listen ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("udp:0.0.0.0:5060", [("udp", "0.0.0.0", 5060)]),
        ("tcp:127.0.0.1:5070", [("tcp", "127.0.0.1", 5070)]),
        ("tls:192.0.2.1:5061", [("tls", "192.0.2.1", 5061)]),
        ("UDP:10.0.0.1:5060", [("udp", "10.0.0.1", 5060)]),
        ("127.0.0.1:5070", [("udp", "127.0.0.1", 5070), ("tcp", "127.0.0.1", 5070)]),
        ("  127.0.0.1:5070  ", [("udp", "127.0.0.1", 5070), ("tcp", "127.0.0.1", 5070)]),
        ("[::1]:5070", [("udp", "::1", 5070), ("tcp", "::1", 5070)]),
        ("udp:[::]:5060", [("udp", "::", 5060)]),
        ("tls:[2001:db8::1]:5061", [("tls", "2001:db8::1", 5061)]),
        ("tcp:[fe80::1%eth0]:5060", [("tcp", "fe80::1%eth0", 5060)]),
        ("localhost:5060", [("udp", "localhost", 5060), ("tcp", "localhost", 5060)]),
        ("udp:127.0.0.1:65535", [("udp", "127.0.0.1", 65535)]),
        ("udp:127.0.0.1:0", [("udp", "127.0.0.1", 0)]),  # any free port
    ],
)
def test_parse_listen_forms(spec: str, expected: list[tuple[str, str, int]]) -> None:
    assert parse_listen(spec) == [Listen(*item) for item in expected]


@pytest.mark.parametrize(
    "spec",
    [
        "5060",
        "udp:5060",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:http",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:5060x",
        "::1:5060",  # IPv6 without brackets
        "udp:::1:5060",
        "[::1]5060",
        "[::1",
        "[::1]:",
        "sctp:127.0.0.1:5060",
        ":5060",
        "udp::5060",
        "[]:5060",
        "",
    ],
)
def test_parse_listen_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="listen"):
        parse_listen(spec)


def test_listen_str_round_trips() -> None:
    for spec in ("udp:0.0.0.0:5060", "tls:[::1]:5061", "tcp:127.0.0.1:0"):
        (item,) = parse_listen(spec)
        assert str(item) == spec
        assert parse_listen(str(item)) == [item]


def test_default_listen_is_every_transport_on_ipv4_and_ipv6() -> None:
    config = config_from_dict({})
    listen = config.listen()
    assert {(x.transport, x.host, x.port) for x in listen} == {
        (t, h, p)
        for t, p in (("udp", 5060), ("tcp", 5060), ("tls", 5061))
        for h in ("0.0.0.0", "::")
    }
    assert config.sensor.listen == DEFAULT_LISTEN


def test_a_bad_listen_entry_in_the_file_names_itself() -> None:
    with pytest.raises(ConfigError, match="udp:nowhere"):
        config_from_dict({"sensor": {"listen": ["udp:nowhere"]}})


# -- sections, keys, types ------------------------------------------------------------------


def test_defaults() -> None:
    config = config_from_dict({})
    assert config == Config()
    assert config.sensor.personality == "asterisk"
    assert config.personality() is BUILTIN["asterisk"]
    users = {ext.user: ext for ext in config.plan}
    assert set(users) == {str(n) for n in range(100, 110)} | {str(n) for n in range(200, 210)} | {
        "300"
    }
    assert users["100"].password == "1234" and users["100"].behaviour == "answer"
    assert users["205"].password == "secret" and users["205"].behaviour == "ring"
    assert users["300"].password is None and users["300"].behaviour == "busy"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"sensors": {}}, "sensors"),
        ({"flood": {}, "bogus": {"x": 1}}, "bogus"),
        ({"sensor": {"nmae": "x"}}, "nmae"),
        ({"flood": {"per_source_rates": 1}}, "per_source_rates"),
        ({"tls": {"certificate": "x"}}, "certificate"),
        ({"credentials": {"recovery": True}}, "recovery"),
        ({"recording": {"json": True}}, "json"),
        ({"console": {"colour": True}}, "colour"),
        ({"extensions": [{"users": "1", "pasword": "x"}]}, "pasword"),
        ({"personalities": {"p": {"servr": "x"}}, "sensor": {"personality": "p"}}, "servr"),
    ],
)
def test_unknown_sections_and_keys_are_refused_by_name(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config_from_dict(data)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"sensor": {"name": 5}}, "sensor.name"),
        ({"sensor": {"listen": "udp:0.0.0.0:5060"}}, "sensor.listen"),
        ({"sensor": {"listen": [5060]}}, "listen"),
        ({"sensor": "pbx"}, "sensor"),
        ({"flood": {"per_source_rate": "fast"}}, "flood.per_source_rate"),
        ({"flood": {"burst": -1}}, "flood.burst"),
        ({"flood": {"max_sources": True}}, "flood.max_sources"),
        ({"flood": {"max_dialogs": 1.5}}, "flood.max_dialogs"),
        ({"recording": {"jsonl": "yes"}}, "recording.jsonl"),
        ({"console": {"enabled": 1}}, "console.enabled"),
        ({"console": {"summary_interval": [1]}}, "console.summary_interval"),
        ({"tls": {"cert": 1}}, "tls.cert"),
        ({"extensions": {"users": "100"}}, "extensions"),
        ({"extensions": 5}, "extensions"),
        ({"extensions": ["100"]}, "extensions"),
        ({"personalities": 5}, "personalities"),
    ],
)
def test_bad_types_are_refused_by_name(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config_from_dict(data)


def test_integers_are_accepted_for_float_keys_and_stay_numbers() -> None:
    config = config_from_dict({"flood": {"per_source_rate": 5, "max_sources": 10}})
    assert config.flood.per_source_rate == 5.0 and isinstance(config.flood.per_source_rate, float)
    assert config.flood.max_sources == 10 and isinstance(config.flood.max_sources, int)


def test_overrides_replace_sensor_keys() -> None:
    config = config_from_dict(
        {"sensor": {"name": "file"}},
        listen=("udp:127.0.0.1:5070",),
        data_dir="/tmp/x",
        personality="cisco",
        name=None,
    )
    assert config.sensor.name == "file"
    assert config.sensor.listen == ("udp:127.0.0.1:5070",)
    assert config.personality().name == "cisco"
    assert config.data_path == Path("/tmp/x")


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sensor\nname = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)


def test_unknown_personality_is_refused() -> None:
    with pytest.raises(ConfigError, match="nokia"):
        config_from_dict({"sensor": {"personality": "nokia"}})


# -- extensions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "users"),
    [
        ("100", ["100"]),
        ("100-103", ["100", "101", "102", "103"]),
        ("100-101,200, 300-301", ["100", "101", "200", "300", "301"]),
        ("007-010", ["007", "008", "009", "010"]),
        ("0-2", ["0", "1", "2"]),
        ("alice,bob", ["alice", "bob"]),
        ("100-abc", ["100-abc"]),
        (" , 5 ,, ", ["5"]),
        ("", []),
    ],
)
def test_expand_users(spec: str, users: list[str]) -> None:
    assert expand_users(spec) == users


@pytest.mark.parametrize(
    ("spec", "match"),
    [("200-100", "backwards"), (f"0-{MAX_EXTENSIONS}", "more than"), ("1-99999999999", "more")],
)
def test_expand_users_errors(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        expand_users(spec)


def test_extension_entries() -> None:
    config = config_from_dict(
        {
            "extensions": [
                {
                    "users": "100-101",
                    "password": 1234,
                    "behaviour": "answer",
                    "answer_after": 2,
                    "call_duration": 5.5,
                },
                {"users": "101,102", "behaviour": "redirect", "redirect_to": "sip:1@x"},
                {"users": "103", "behaviour": "hangup", "ring_timeout": 9, "media": "echo"},
            ]
        }
    )
    users = {ext.user: ext for ext in config.plan}
    assert users["100"].password == "1234"  # a TOML integer password is a string
    assert users["100"].answer_after == 2.0 and users["100"].call_duration == 5.5
    assert users["101"].behaviour == "redirect"  # a later entry wins
    assert users["102"].redirect_to == "sip:1@x"
    assert users["103"].ring_timeout == 9.0 and users["103"].media == "echo"


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"password": "x"}, "'users' is required"),
        ({"users": "1", "behaviour": "dance"}, "behaviour"),
        ({"users": "1", "media": "radio"}, "media"),
        ({"users": "1", "behaviour": "redirect"}, "redirect_to"),
        ({"users": "1", "answer_after": -1}, "answer_after"),
        ({"users": "1", "ring_timeout": "long"}, "ring_timeout"),
        ({"users": "1", "call_duration": True}, "call_duration"),
        ({"users": "1-0"}, "backwards"),
    ],
)
def test_extension_errors_name_the_entry(entry: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        config_from_dict({"extensions": [{"users": "5"}, entry]})
    assert "extensions[1]" in str(info.value) or match == "backwards"


def test_extension_count_is_capped_over_all_entries() -> None:
    half = MAX_EXTENSIONS // 2 + 1
    entries = [{"users": f"0-{half}"}, {"users": f"{half + 1}-{2 * half + 1}"}]
    with pytest.raises(ConfigError, match="more than"):
        config_from_dict({"extensions": entries})


# -- personalities --------------------------------------------------------------------------


def test_custom_personality_based_on_a_builtin() -> None:
    config = config_from_dict(
        {
            "sensor": {"personality": "mypbx"},
            "personalities": {
                "mypbx": {
                    "base": "freepbx",
                    "server": "Asterisk PBX 18.9.0",
                    "realm": "mypbx",
                    "challenge_invite": False,
                    "allow": ["INVITE", "ACK", "BYE"],
                    "reasons": {"486": "Busy"},
                    "ringing_delay": 1,
                }
            },
        }
    )
    p = config.personality()
    assert p.name == "mypbx"
    assert p.server == "Asterisk PBX 18.9.0" and p.realm == "mypbx"
    assert p.challenge_invite is False
    assert p.allow == ("INVITE", "ACK", "BYE")
    assert p.reason(486) == "Busy"
    assert p.ringing_delay == 1
    # Everything else comes from the base.
    freepbx = BUILTIN["freepbx"]
    assert p.nonce_style == freepbx.nonce_style and p.tag_style == freepbx.tag_style
    assert p.supported == freepbx.supported
    assert "freepbx" in p.description


def test_custom_personality_defaults_to_asterisk_base() -> None:
    config = config_from_dict(
        {"sensor": {"personality": "x"}, "personalities": {"x": {"realm": "r"}}}
    )
    assert config.personality().server == BUILTIN["asterisk"].server


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"base": "nokia"}, "nokia"),
        ({"colour": "red"}, "colour"),
        ({"nonce_style": "md5"}, "nonce_style"),
        ({"tag_style": "long"}, "tag_style"),
        ({"challenge_invite": "yes"}, "challenge_invite"),
        ({"server": 5}, "server"),
        ({"allow": "INVITE"}, "allow"),
        ({"allow": [1, 2]}, "allow"),
        ({"ringing_delay": "soon"}, "ringing_delay"),
        ({"reasons": {"busy": "x"}}, "reasons"),
        ({"reasons": ["x"]}, "reasons"),
        ({"name": "other"}, "name"),
    ],
)
def test_custom_personality_errors_are_config_errors(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"sensor": {"personality": "p"}, "personalities": {"p": values}})


def test_custom_personality_may_shadow_a_builtin_name() -> None:
    config = config_from_dict(
        {
            "sensor": {"personality": "cisco"},
            "personalities": {"cisco": {"base": "cisco", "realm": "gw"}},
        }
    )
    p = config.personality()
    assert p.realm == "gw" and p.server == BUILTIN["cisco"].server


# -- render ---------------------------------------------------------------------------------


def _round_trip(config: Config, tmp_path: Path) -> Config:
    path = tmp_path / "siptrap.toml"
    path.write_text(render(config), encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))  # valid TOML
    return load_config(path)


def test_render_of_defaults_loads_back_equal(tmp_path: Path) -> None:
    config = config_from_dict({})
    text = render(config)
    assert _round_trip(config, tmp_path) == config
    # Every key is there, each with a comment.
    for section in ("sensor", "tls", "flood", "credentials", "recording", "console"):
        assert f"[{section}]" in text
    # Every key of the sections is there, each after its comment.
    head = text.split("[[extensions]]")[0].splitlines()
    keys = [i for i, line in enumerate(head) if " = " in line and not line.startswith("#")]
    assert len(keys) == sum(len(fields(getattr(config, name))) for name in SECTIONS)
    assert all(head[i - 1].startswith("# ") for i in keys)
    assert "per_source_rate = 200.0" in text
    assert "# requests a second answered per source address; 0 = no limit" in text


def test_render_of_a_full_configuration_loads_back_equal(tmp_path: Path) -> None:
    data = {
        "sensor": {
            "name": 'pbx "one" \\ ☎ 😀 tab\there',
            "personality": "my-pbx",
            "data_dir": "/var/lib/siptrap data",
            "listen": ["udp:127.0.0.1:5070", "tls:[::1]:5071", "10.0.0.1:5060"],
            "public_address": "203.0.113.5",
        },
        "tls": {"cert": "/etc/c.pem", "key": "/etc/k.pem", "common_name": "sip.example"},
        "flood": {"per_source_rate": 0.5, "burst": 3, "amplification": 0, "max_sources": 7},
        "credentials": {"recover": False, "max_candidates": 10},
        "recording": {"jsonl": False, "queue_size": 99},
        "console": {"enabled": False, "summary_interval": 0},
        "extensions": [
            {
                "users": "100-109,200",
                "password": 'p"w\\d',
                "behaviour": "answer",
                "answer_after": 1.5,
                "call_duration": 20,
            },
            {"users": "301", "behaviour": "redirect", "redirect_to": "sip:9@203.0.113.9"},
        ],
        "personalities": {
            "my-pbx": {
                "base": "cisco",
                "server": "Cisco-SIPGateway/IOS-16",
                "allow": ["INVITE", "BYE"],
                "reasons": {"486": "Busy Here Now"},
                "challenge_invite": True,
                "ringing_delay": 0.25,
            },
            "other pbx": {"realm": "x"},
        },
    }
    config = config_from_dict(data)
    again = _round_trip(config, tmp_path)
    assert again == config
    assert again.sensor.name == data["sensor"]["name"]  # type: ignore[index]


def test_render_escapes_control_characters(tmp_path: Path) -> None:
    config = config_from_dict({"sensor": {"name": "a\x00b\x1bc\x7fd\ne\rf\u2028"}})
    assert _round_trip(config, tmp_path) == config


def test_plan_and_personalities_are_resolved_once_at_load() -> None:
    config = config_from_dict(
        {
            "extensions": [{"users": "100-102", "behaviour": "busy"}],
            "personalities": {"mine": {"base": "cisco", "realm": "r"}},
        }
    )
    assert config.plan is config.plan  # one tuple, not rebuilt per use
    assert [e.user for e in config.plan] == ["100", "101", "102"]
    assert config.endpoint_settings().extensions is config.plan
    assert config.personality_named("mine") is config.personality_named("mine")
    assert config.personality_named("mine").realm == "r"
    assert config.personality_named("polycom") is BUILTIN["polycom"]


def test_a_broken_personality_is_refused_at_load_even_if_not_in_use() -> None:
    # before, it was only found out when `siptrap ctl personality bad` switched to it
    with pytest.raises(ConfigError, match="personality 'bad': unknown key 'colour'"):
        config_from_dict({"personalities": {"bad": {"colour": "red"}}})
