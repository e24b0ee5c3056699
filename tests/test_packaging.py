"""The wheel `python -m build` makes installs into a fresh venv and runs: `siptrap run`
answers SIP and serves its dashboard (templates and static files are in the wheel)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest

from siptrap_proc import free_port

pytestmark = pytest.mark.tools
ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_in_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("siptrap-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    sip_port, web_port = free_port(), free_port(socket.SOCK_STREAM)
    listen = ["--listen", f"udp:127.0.0.1:{sip_port}", "--web", f"127.0.0.1:{web_port}"]
    proc = subprocess.Popen(
        [
            str(env_dir / "bin" / "siptrap"),
            "run",
            "--quiet",
            "--data-dir",
            str(tmp_path / "d"),
            *listen,
        ],
        cwd=tmp_path,  # not the source tree: the installed package must be complete
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        options = (
            f"OPTIONS sip:100@127.0.0.1:{sip_port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKwheel\r\n"
            "From: <sip:w@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: wheel\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        reply = b""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(1)
            for _ in range(30):
                sock.sendto(options, ("127.0.0.1", sip_port))
                try:
                    reply = sock.recv(4096)
                    break
                except TimeoutError:
                    continue
        assert reply.startswith(b"SIP/2.0 200"), reply
        base = f"http://127.0.0.1:{web_port}"
        for path in ("/", "/static/siptrap.css", "/static/live.js", "/api/v1/openapi.json"):
            with urllib.request.urlopen(base + path, timeout=10) as page:
                assert page.status == 200, path
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
