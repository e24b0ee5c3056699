"""The shipped systemd unit (`examples/systemd/siptrap.service`): systemd's own checker
accepts it, its hardening is what the README promises (a user of its own, only
CAP_NET_BIND_SERVICE, the data directory the only place it writes), and systemd rates
its exposure low. Its command line is one `siptrap run` accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from siptrap_proc import BIN

pytestmark = pytest.mark.tools
UNIT = Path(__file__).resolve().parents[1] / "examples" / "systemd" / "siptrap.service"


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_is_hardened_as_the_readme_says() -> None:
    d = _directives(UNIT.read_text())
    assert d["DynamicUser"] == ["yes"] and d["NoNewPrivileges"] == ["yes"]
    assert d["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert d["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert d["ProtectSystem"] == ["strict"] and d["ReadWritePaths"] == ["/var/lib/siptrap"]
    assert d["StateDirectory"] == ["siptrap"]
    command = shlex.split(d["ExecStart"][0])
    assert command[1] == "run" and "--data-dir" in command
    assert command[command.index("--data-dir") + 1] == "/var/lib/siptrap"
    listens = [command[i + 1] for i, word in enumerate(command) if word == "--listen"]
    assert "0.0.0.0:5060" in listens


def test_systemd_accepts_the_unit_and_rates_it_low_exposure(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = tmp_path / "siptrap.service"  # the same unit, with this venv's siptrap
    unit.write_text(UNIT.read_text().replace("/opt/siptrap/bin/siptrap", str(BIN)))
    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, timeout=60, check=False
    )
    complaints = [
        line
        for line in verify.stderr.decode().splitlines()
        if "siptrap.service" in line  # not the host's own units
    ]
    assert verify.returncode == 0 and complaints == [], verify.stderr.decode()
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout.decode())
    assert found, security.stdout.decode()[-2000:] + security.stderr.decode()
    assert float(found.group(1)) <= 2.5  # systemd's scale: 0 (safe) to 10 (exposed)


def test_the_units_command_line_is_one_siptrap_run_accepts() -> None:
    from siptrap.cli import build_parser

    command = shlex.split(_directives(UNIT.read_text())["ExecStart"][0])
    args = build_parser().parse_args(command[1:])
    assert args.func.__name__ == "cmd_run" and args.web == "127.0.0.1:8080"
