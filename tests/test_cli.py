"""The `siptrap` command: parse --json (the RFC 4475 messages, stdin, non-SIP input),
exit codes, config show, --version, and export-hashes on a real data directory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import RFC4475
from siptrap import __version__
from siptrap.cli import main
from siptrap.config import load_config
from siptrap.sip import Response
from siptrap.sip.auth import answer_challenge, parse_challenge
from siptrap.sip.build import build_request
from test_app import Running, make_config, udp_exchange

BIN = Path(sys.executable).parent / "siptrap"
ADDRESS_KEYS = {"display", "uri", "user", "tag"}
VIA_KEYS = {"transport", "host", "port", "branch"}
CONTRACT = {
    "kind", "method", "request_uri", "status", "reason", "call_id", "cseq", "via", "from",
    "to", "user_agent", "headers", "body_length", "defects",
}  # fmt: skip


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def parse_json(capsys: pytest.CaptureFixture[str], *files: str) -> list[dict[str, Any]]:
    assert main(["parse", "--json", *files]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# -- parse --------------------------------------------------------------------------------------


def _check_contract(obj: dict[str, Any], data: bytes) -> None:
    assert CONTRACT <= set(obj), CONTRACT - set(obj)
    assert obj["kind"] in ("request", "response")
    if obj["kind"] == "request":
        assert isinstance(obj["method"], str) and isinstance(obj["request_uri"], str)
        assert obj["status"] is None and obj["reason"] is None
        assert data.split(b" ", 1)[0].decode("utf-8", "replace") == obj["method"]
    else:
        assert isinstance(obj["status"], int) and isinstance(obj["reason"], str)
        assert obj["request_uri"] is None
    cseq = obj["cseq"]
    assert cseq is None or (set(cseq) == {"seq", "method"} and isinstance(cseq["seq"], int))
    assert isinstance(obj["via"], list)
    for via in obj["via"]:
        assert set(via) == VIA_KEYS
        assert via["port"] is None or isinstance(via["port"], int)
    for side in ("from", "to"):
        assert obj[side] is None or set(obj[side]) == ADDRESS_KEYS
    assert isinstance(obj["headers"], list)
    assert all(isinstance(h, list) and len(h) == 2 for h in obj["headers"])
    assert isinstance(obj["body_length"], int) and 0 <= obj["body_length"] <= len(data)
    assert isinstance(obj["defects"], list) and all(isinstance(d, str) for d in obj["defects"])
    assert obj["user_agent"] is None or isinstance(obj["user_agent"], str)


def test_parse_json_over_every_rfc4475_message(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(RFC4475.glob("*.dat"))
    assert len(files) >= 49
    out = parse_json(capsys, *map(str, files))
    assert [o["file"] for o in out] == [str(f) for f in files]  # one object per file, in order
    by_name = {Path(o["file"]).stem: o for o in out}
    for path in files:
        obj = by_name[path.stem]
        assert "error" not in obj, path.name  # every torture message is still a message
        _check_contract(obj, path.read_bytes())
    # What the RFC says the messages hold.
    assert by_name["wsinv"]["method"] == "INVITE"
    assert by_name["wsinv"]["to"]["user"] == "vivekg"
    assert by_name["intmeth"]["method"] == "!interesting-Method0123456789_*+`.%indeed'~"
    assert by_name["noreason"]["status"] == 100 and by_name["noreason"]["reason"] == ""
    assert by_name["unreason"]["reason"].startswith("= 2**3 * 5**2")
    assert by_name["badvers"]["defects"] == ["bad_version"]
    assert "bad_status_code" in by_name["bigcode"]["defects"]
    assert by_name["mpart01"]["body_length"] > 0 and by_name["cparam01"]["body_length"] == 0
    transports = [v["transport"] for v in by_name["transports"]["via"]]
    assert len(transports) >= 4 and "UDP" in transports
    assert by_name["cparam01"]["defects"] == []


def test_parse_json_for_non_sip_input_gives_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    http = tmp_path / "http"
    http.write_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = parse_json(capsys, str(junk), str(empty), str(http), str(tmp_path / "missing"))
    assert len(out) == 4
    for obj, path in zip(out, (junk, empty, http, tmp_path / "missing"), strict=True):
        assert obj["file"] == str(path)
        assert isinstance(obj["error"], str) and obj["error"]
        assert "kind" not in obj


def test_parse_reads_stdin_with_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (RFC4475 / "esc01.dat").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    (obj,) = parse_json(capsys, "-")
    assert obj["file"] == "-" and obj["method"] == "INVITE"
    _check_contract(obj, data)


def test_parse_text_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(RFC4475 / "zeromf.dat")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("== ") and "request" in text
    assert "Max-Forwards: 0" in text


def test_parse_in_a_real_process_stdin_and_exit_codes() -> None:
    data = (RFC4475 / "wsinv.dat").read_bytes()
    done = run("parse", "--json", "-", str(RFC4475 / "bcast.dat"), "/nonexistent", stdin=data)
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [o.get("kind") for o in lines] == ["request", "response", None]
    assert "error" in lines[2]
    _check_contract(lines[0], data)


@pytest.mark.parametrize(
    "args",
    [[], ["parse"], ["frobnicate"], ["run", "--nonsense"], ["parse", "--jsn", "x"], ["config"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    try:
        code: int | str | None = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2


@pytest.mark.parametrize("family", ["config", "blocks"])
def test_a_family_without_its_subcommand_prints_its_own_help(
    family: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([family]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"usage: siptrap {family} ")
    assert "SUBCOMMAND" in out


def _help_of(args: list[str]) -> str:
    done = run(*args, "--help")
    assert done.returncode == 0
    return done.stdout.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["config", "show"],
        ["export-hashes"],
        ["blocks", "list"],
        ["blocks", "lift"],
        ["status"],
        ["web"],
        ["ctl"],
        ["report"],
    ],
)
def test_every_data_dir_option_says_what_it_is(args: list[str]) -> None:
    text = " ".join(_help_of(args).split())
    assert "--data-dir DIR data directory (default ./siptrap-data)" in text


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    # `siptrap status --json | head -1`: the reader closed its end before siptrap wrote.
    read, write = os.pipe()
    os.close(read)
    with open(write, "wb") as out:
        done = subprocess.run(
            [str(BIN), "status", "--json", "--data-dir", str(tmp_path)],
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert b"Traceback" not in done.stderr
    assert done.returncode == 1


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"siptrap {__version__}"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", __version__)


# -- config show --------------------------------------------------------------------------------


def test_config_show_prints_valid_toml_with_overrides(tmp_path: Path) -> None:
    done = run(
        "config", "show", "--personality", "cisco", "--listen", "udp:127.0.0.1:5070",
        "--listen", "tls:[::1]:5071", "--data-dir", str(tmp_path / "d"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(done.stdout.decode())
    assert data["sensor"]["personality"] == "cisco"
    assert data["sensor"]["listen"] == ["udp:127.0.0.1:5070", "tls:[::1]:5071"]
    assert data["sensor"]["data_dir"] == str(tmp_path / "d")
    assert data["flood"]["per_source_rate"] == 200.0
    assert [e["users"] for e in data["extensions"]] == ["100-109", "200-209", "300"]
    # What it prints is a configuration file siptrap takes back as it is.
    path = tmp_path / "shown.toml"
    path.write_bytes(done.stdout)
    loaded = load_config(path)
    assert loaded.sensor.personality == "cisco"
    assert loaded.sensor.listen == ("udp:127.0.0.1:5070", "tls:[::1]:5071")


def test_config_show_of_a_file_and_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[sensor]\nname = "edge-7"\n[[extensions]]\nusers = "55"\n')
    assert main(["config", "show", "--config", str(good)]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["sensor"]["name"] == "edge-7"
    assert shown["extensions"] == [{"users": "55"}]
    bad = tmp_path / "bad.toml"
    bad.write_text("[sensor]\nnmae = 1\n")
    assert main(["config", "show", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "nmae" in err
    assert main(["config", "show", "--listen", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_run_refuses_a_bad_configuration_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[personalities.x]\nnonce_style = "md5"\n[sensor]\npersonality = "x"\n')
    done = run("run", "--config", str(bad), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    assert b"nonce_style" in done.stderr and b"Traceback" not in done.stderr


# -- export-hashes ------------------------------------------------------------------------------

HOST = "127.0.0.1"


def _register(port: int, user: str, call_id: str, cseq: int, auth: str | None = None) -> Response:
    headers = [("Authorization", auth)] if auth else []
    data = build_request(
        "REGISTER",
        f"sip:{HOST}",
        via=f"SIP/2.0/UDP {HOST}:5099;branch=z9hG4bK-{call_id}-{cseq};rport",
        from_=f"<sip:{user}@{HOST}>;tag=t{cseq}",
        to=f"<sip:{user}@{HOST}>",
        call_id=call_id,
        cseq=cseq,
        contact=f"<sip:{user}@{HOST}:5099>",
        headers=headers,
    )
    return udp_exchange(HOST, port, data)


def hashcat_11400_verifies(line: str, password: str) -> bool:
    """hashcat mode 11400's computation, written from its format description."""
    fields = line.split("*")
    assert fields[0] == "$sip$" and len(fields) == 15, line
    _, _server, _client, user, realm, method, prefix, resource, suffix = fields[:9]
    nonce, cnonce, nc, qop, algorithm, response = fields[9:]
    assert algorithm == "MD5"
    uri = ":".join(part for part in (prefix, resource, suffix) if part)

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # the protocol's hash

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    if qop:
        expected = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        expected = md5(f"{ha1}:{nonce}:{ha2}")
    return expected == response


def test_export_hashes_from_a_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    config = make_config(
        data_dir,
        ["udp:127.0.0.1:0"],
        sensor={"personality": "freepbx", "data_dir": str(data_dir), "listen": ["udp:127.0.0.1:0"]},
        extensions=[{"users": "100", "password": "1234"}],
    )
    running = Running(config).start()
    guesses = {"qop": "hunter2", "no-qop": "letmein"}
    try:
        port = running.port("udp")
        for cseq, (kind, guess) in enumerate(guesses.items(), start=1):
            challenge = _register(port, "100", f"reg-{kind}", 2 * cseq - 1)
            assert challenge.status == 401
            offered = parse_challenge(challenge.header("www-authenticate") or "")
            assert offered is not None and "auth" in offered.qop  # PJSIP style offers qop
            answered = offered if kind == "qop" else replace(offered, qop=())
            creds = answer_challenge(
                answered, "100", guess, "REGISTER", f"sip:{HOST}", cnonce="c0ffee"
            )
            refused = _register(port, "100", f"reg-{kind}", 2 * cseq, creds.header_value())
            assert refused.status == 403
    finally:
        running.stop()
    out = tmp_path / "hashes.txt"
    assert main(["export-hashes", "--data-dir", str(data_dir), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        fields = line.split("*")
        assert fields[0] == "$sip$" and len(fields) == 15
        assert fields[1:6] == [HOST, HOST, "100", "asterisk", "REGISTER"]
        assert re.fullmatch(r"[0-9a-f]{32}", fields[14])
    with_qop = [line for line in lines if line.split("*")[12] == "auth"]
    without = [line for line in lines if line.split("*")[12] == ""]
    assert len(with_qop) == 1 and len(without) == 1
    assert hashcat_11400_verifies(with_qop[0], guesses["qop"])
    assert hashcat_11400_verifies(without[0], guesses["no-qop"])
    for line in lines:  # the math is not vacuous: other passwords do not verify
        assert not hashcat_11400_verifies(line, "1234")
    # Standard output, too.
    assert main(["export-hashes", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_export_hashes_without_a_database_fails_cleanly(tmp_path: Path) -> None:
    done = run("export-hashes", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert b"no database" in done.stderr and done.stdout == b""


@pytest.mark.parametrize("where", ["before", "after", "after="])
def test_ctl_takes_data_dir_before_or_after_the_command(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "elsewhere")
    args = {
        "before": ["ctl", "--data-dir", data, "status"],
        "after": ["ctl", "status", "--data-dir", data],
        "after=": ["ctl", "status", f"--data-dir={data}"],
    }[where]
    assert main(args) == 1  # nothing runs there
    assert capsys.readouterr().err.strip() == (
        f"siptrap ctl: no running honeypot at {data}/control.sock"
    )
