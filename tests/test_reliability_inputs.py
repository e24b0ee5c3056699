"""Issue 8, items 6-8: siptrap refuses to run deaf or with a broken data directory (one
line, exit 2, no traceback), `system` actions cannot hand attacker text to a shell, and
attacker bytes are escaped in HTML alert pages and in every JSON output."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from siptrap.analysis.actions import CommandRunner
from siptrap.analysis.outcome import Command
from siptrap.analysis.rules import RuleError, load_rules
from siptrap.analysis.system_policy import program_name, refusal
from siptrap.app import Honeypot
from siptrap.cli import main
from siptrap.config import config_from_dict
from siptrap.outputs.alerts import alert_html, alert_text
from siptrap.startup import StartupError

SIPTRAP = Path(sys.executable).parent / "siptrap"


def siptrap(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIPTRAP), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line_exit_2(done: subprocess.CompletedProcess[str], says: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert says in lines[0], lines[0]


def one_line(capsys: pytest.CaptureFixture[str], says: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_in(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    listen = f"udp:127.0.0.1:{free_udp_port()}"
    return siptrap("run", "--quiet", "--data-dir", str(data_dir), "--listen", listen, *extra)


# -- 6. refuse to run deaf, or with a data directory it cannot use ------------------------------
def test_run_refuses_to_run_deaf(tmp_path: Path) -> None:
    done = siptrap(
        "run", "--quiet", "--data-dir", str(tmp_path / "d"), "--listen", "udp:192.0.2.123:5060"
    )
    one_line_exit_2(done, "no configured socket could be opened")
    assert "udp:192.0.2.123:5060" in done.stderr


def _file(tmp: Path) -> Path:
    (tmp / "plain").write_text("a file\n")
    return tmp / "plain"


def _under_a_file(tmp: Path) -> Path:
    return _file(tmp) / "sub"


def _db_directory(tmp: Path) -> Path:
    (tmp / "d" / "siptrap.db").mkdir(parents=True)
    return tmp / "d"


def _db_not_a_database(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    (tmp / "d" / "siptrap.db").write_bytes(b"this is not SQLite\n" * 10)
    return tmp / "d"


def _jsonl_directory(tmp: Path) -> Path:
    (tmp / "d" / "events.jsonl").mkdir(parents=True)
    return tmp / "d"


def _db_not_siptraps(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    with sqlite3.connect(tmp / "d" / "siptrap.db") as db:
        db.execute("create table someone_elses (x)")
    return tmp / "d"


def _alerts_a_file(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    (tmp / "d" / "alerts").write_text("x")
    return tmp / "d"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_file, "is not a directory"),
        (_under_a_file, "cannot create data directory"),
        (_db_directory, "siptrap.db is a directory"),
        (_db_not_a_database, "is not a SQLite database"),
        (_jsonl_directory, "events.jsonl is a directory"),
        (_alerts_a_file, "must be a directory"),
        (_db_not_siptraps, "not one siptrap wrote"),
    ],
    ids=[
        "a-file",
        "under-a-file",
        "db-directory",
        "db-not-sqlite",
        "jsonl-directory",
        "alerts",
        "db-not-siptraps",
    ],
)
def test_a_broken_data_directory_is_one_line_and_exit_2(tmp_path: Path, make, says: str) -> None:
    config = config_from_dict(
        {"sensor": {"data_dir": str(make(tmp_path)), "listen": ["udp:127.0.0.1:0"]}}
    )

    async def start() -> None:
        honeypot = Honeypot(config)
        await honeypot.start()
        await honeypot.close()  # reached only if nothing was wrong

    with pytest.raises(StartupError) as raised:
        asyncio.run(start())
    message = str(raised.value)
    assert says in message and "\n" not in message


def test_the_command_line_prints_a_data_directory_problem_as_one_line(tmp_path: Path) -> None:
    one_line_exit_2(run_in(_db_not_siptraps(tmp_path)), "not one siptrap wrote")


@pytest.mark.parametrize("where", ["missing/dir/out.txt", "."], ids=["no-parent", "a-directory"])
def test_export_hashes_into_an_impossible_path(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from siptrap.store.sqlite import SqliteSink

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    sink = SqliteSink(data_dir / "siptrap.db")  # a real, empty siptrap database
    sink.open()
    sink.close()
    out = tmp_path / where
    assert main(["export-hashes", "--data-dir", str(data_dir), "-o", str(out)]) == 2
    one_line(capsys, "cannot write")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_db_directory, "is a directory"),
        (_db_not_a_database, "is not a SQLite database"),
        (_db_not_siptraps, "not one siptrap wrote"),
    ],
    ids=["db-directory", "db-not-sqlite", "db-not-siptraps"],
)
def test_export_hashes_from_a_broken_database(
    tmp_path: Path, make, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export-hashes", "--data-dir", str(make(tmp_path))]) == 2
    one_line(capsys, says)


# -- 7. system actions never hand attacker text to a shell --------------------------------------
RULE = "[r]\ntype = Classification\ncontext = ANY\naction = system {}\n"


@pytest.mark.parametrize(
    "command",
    [
        "'/bin/sh -c \"echo %UserAgent >> f\"'",
        "'bash -c \"logger %IPSrc\"'",
        "'/usr/bin/python3 -c \"print(1)\" %UserAgent'",
        "'perl -e \"print 1\" %UserAgent'",
        "'/usr/bin/env sh -c x %UserAgent'",
        "'awk {print} %UserAgent'",
        "'xargs echo %UserAgent'",
        "'ssh root@192.0.2.1 logger %UserAgent'",
        "'bash %UserAgent'",
        "'busybox sh -c x'",
    ],
)
def test_programs_that_run_their_arguments_as_code_are_refused(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "bad.rules"
    rules.write_text(RULE.format(command))
    with pytest.raises(RuleError, match="system program"):
        load_rules([str(rules)])
    assert main(["rules", "check", str(rules)]) == 1
    one_line(capsys, "system program")


def test_run_refuses_a_shell_rule_at_start(tmp_path: Path) -> None:
    rules = tmp_path / "bad.rules"
    rules.write_text(RULE.format("'/bin/sh -c \"echo %UserAgent >> f\"'"))
    config = tmp_path / "siptrap.toml"
    config.write_text(f'[analysis]\nrules = ["{rules}"]\nsystem_actions = true\n')
    done = run_in(tmp_path / "d", "--config", str(config))
    one_line_exit_2(done, "system program")


@pytest.mark.parametrize(
    "command",
    [
        "'/usr/local/bin/block --ip=%IPSrc'",
        "'bash ./on_flood.sh %IPSrc'",  # the paper's action: a script file, attacker text data
        "'/usr/bin/python3 /opt/notify.py %UserAgent'",
    ],
)
def test_a_program_or_a_script_file_with_data_arguments_is_allowed(
    tmp_path: Path, command: str
) -> None:
    rules = tmp_path / "ok.rules"
    rules.write_text(RULE.format(command))
    assert len(load_rules([str(rules)])) == 1


def test_program_names_lose_paths_and_versions() -> None:
    assert program_name("/usr/bin/python3.11") == "python"
    assert program_name("PERL5.36") == "perl"
    assert program_name("/opt/tools/block") == "block"
    assert refusal(("/usr/bin/python3.11", "-c", "x")) is not None
    assert refusal(("/usr/local/bin/block", "%IPSrc")) is None


def test_the_runner_refuses_a_shell_it_is_handed_anyway(tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    runner = CommandRunner(timeout=5, concurrency=1)
    try:
        runner(Command("r", ("/bin/sh", "-c", f"touch {witness}")))
    finally:
        runner.close()
    assert runner.refused == 1 and runner.started == 0 and not witness.exists()


# -- 8. attacker bytes are escaped everywhere ---------------------------------------------------
class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_html_alert_pages_escape_control_characters() -> None:
    hostile = "ua\x00nul\x1b[31mesc\rcr\nlf\udcffbyte"
    fields = {
        "alert_id": "a-1",
        "severity": "high",
        "conclusions": [f"User-Agent {hostile}"],
        "targets": [hostile],
        "call_ids": [hostile],
    }
    page = alert_html(fields)
    page.encode("utf-8")  # no lone surrogate: the page can be written as UTF-8
    body = page.split("<body>", 1)[1]
    for raw in ("\x00", "\x1b", "\r", "\udcff"):
        assert raw not in page, repr(raw)
    shown = "ua\\x00nul\\x1b[31mesc\\x0dcr\\x0alf\\xffbyte"
    parser = _Texts()
    parser.feed(body)
    assert f"User-Agent {shown}" in parser.texts
    assert shown in alert_text(fields)  # the same escaping as the text alert


NON_UTF8_CALL_ID = (
    b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-1\r\n"
    b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6162\r\n'
    b'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
    b"Call-ID: \xff\xfe\x1bbad\xc3(@x\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"User-Agent: friendly-scanner \xc3\x28\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def strict_json_lines(output: bytes) -> list[dict[str, object]]:
    text = output.decode("utf-8")  # strict: raises on anything that is not UTF-8
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_analyze_json_is_valid_utf8_whatever_the_call_id_holds(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    message = tmp_path / "scan.sip"
    message.write_bytes(NON_UTF8_CALL_ID)
    assert main(["analyze", "--json", str(message)]) == 0
    (alert,) = strict_json_lines(capsysbinary.readouterr().out)
    assert alert["event"] == "analysis.alert.raised"
    assert alert["call_ids"] == ["\udcff\udcfe\x1bbad\udcc3(@x"]  # events.jsonl's escaping


def test_parse_json_is_valid_utf8_too(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    message = tmp_path / "scan.sip"
    message.write_bytes(NON_UTF8_CALL_ID)
    assert main(["parse", "--json", str(message)]) == 0
    (parsed,) = strict_json_lines(capsysbinary.readouterr().out)
    assert "non_utf8" in json.dumps(parsed)
