"""The closed loop in the operator's view, for real: `siptrap run --web` with a policy
ladder and a blocklist action, attacked by SIPVicious svwar; the block it earns is in
`/api/v1/blocks` exactly as `siptrap blocks list --json` prints it, on the Blocks page and
the source's page, and a lift through the API (admin token only) takes it off the running
honeypot's ladder and out of the blocklist."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from siptrap_proc import BIN, Siptrap, http, run_tool

pytestmark = pytest.mark.tools

TOKEN = "blocks-t0ken"
ATTACKER = "127.0.0.1"
CONFIG = """
[sensor]
personality = "yealink"

[policy]
ladder = ["try_later", "forbid"]
step_after = 600
expire = 600
allow = ["127.0.0.2/32"]

[[actions]]
kind = "blocklist"

[[extensions]]
users = "100-105"
password = "1234"
behaviour = "answer"
"""


def _blocks_list(data_dir: Path) -> Any:
    out = subprocess.run(
        [str(BIN), "blocks", "list", "--json", "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_real_block_is_listed_shown_and_lifted_through_the_api(tmp_path: Path) -> None:
    svwar = require_tool("sipvicious_svwar")
    trap = Siptrap(tmp_path / "data", CONFIG, web_token=TOKEN)
    base = trap.url("")
    trap.start()
    try:
        run_tool([svwar, "-e100-110", "-p", str(trap.port), ATTACKER])
        changed = trap.wait_for(lambda e: e["event"] == "response.policy.changed", 20)
        assert changed and changed[0]["src_ip"] == ATTACKER, trap.events()[-5:]
        status, _, body = http(f"{base}/api/v1/blocks")
        items = json.loads(body)["items"]
        assert status == 200 and [b["src_ip"] for b in items] == [ATTACKER]
        assert items[0]["step"] == "try_later" and items[0]["category"] == changed[0]["category"]
        assert items == _blocks_list(trap.data_dir)  # the same state `blocks list` reads
        for path in ("/blocks", f"/sources/{ATTACKER}"):
            status, _, page = http(base + path)
            assert status == 200 and b"try_later" in page, path
        blocklist = trap.data_dir / "blocklist.txt"
        assert ATTACKER in blocklist.read_text().split()
        lift = f"{base}/api/v1/blocks/lift"
        assert http(lift, {"src_ip": ATTACKER})[0] == 401  # loopback reads, never lifts
        status, _, body = http(lift, {"src_ip": ATTACKER}, TOKEN)
        assert status == 200, body
        assert json.loads(body) == {"src_ip": ATTACKER, "lifted": True, "errors": []}
        lifted = trap.wait_for(
            lambda e: e["event"] == "response.policy.changed" and e.get("reason") == "lifted",
            10,
        )
        assert lifted and lifted[0]["src_ip"] == ATTACKER
        assert _blocks_list(trap.data_dir) == []
        assert json.loads(http(f"{base}/api/v1/blocks")[2])["items"] == []
        assert ATTACKER not in blocklist.read_text().split()
        control = trap.wait_for(lambda e: e["event"] == "sensor.control", 10)
        assert [(e["who"], e["command"]) for e in control] == [
            ("api 127.0.0.1", f"blocks lift {ATTACKER}")
        ]
        assert control[0]["result"] == {"src_ip": ATTACKER, "lifted": True, "errors": []}
    finally:
        assert trap.stop() == 0


def test_the_blocks_page_lifts_with_its_button_in_chromium(tmp_path: Path) -> None:
    """The lift button: a form POST (no script, the page's CSP kept) with the admin token
    in its HttpOnly cookie and the form's CSRF value; the honeypot records who did it."""
    svwar, chromium = require_tool("sipvicious_svwar"), require_tool("chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    trap = Siptrap(tmp_path / "data", CONFIG, web_token=TOKEN)
    base = trap.url("")
    trap.start()
    try:
        run_tool([svwar, "-e100-110", "-p", str(trap.port), ATTACKER])
        assert trap.wait_for(lambda e: e["event"] == "response.policy.changed", 20)
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            try:
                page = browser.new_page()
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text))
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"{base}/blocks")  # reading without the token: no button
                assert page.locator("form.lift").count() == 0
                reply = page.goto(f"{base}/blocks?token={TOKEN}")  # the cookie from here on
                assert reply is not None and reply.status == 200
                csp = reply.headers["content-security-policy"]
                assert "script-src 'self'" in csp and "form-action 'self'" in csp
                assert page.locator("script").count() == 0
                row = page.locator("table.rows tbody tr", has_text=ATTACKER)
                assert row.count() == 1 and "try_later" in row.inner_text()
                with page.expect_navigation():
                    row.locator("form.lift button").click()
                assert page.url == f"{base}/blocks?lifted={ATTACKER}"
                assert page.locator("#lifted").inner_text() == f"The block on {ATTACKER} is lifted."
                assert page.locator("table.rows tbody tr", has_text="try_later").count() == 0
                assert problems == []
            finally:
                browser.close()
        assert _blocks_list(trap.data_dir) == []
        assert ATTACKER not in (trap.data_dir / "blocklist.txt").read_text().split()
        control = trap.wait_for(lambda e: e["event"] == "sensor.control", 10)
        assert [(e["who"], e["command"]) for e in control] == [
            ("api 127.0.0.1 (blocks page)", f"blocks lift {ATTACKER}")
        ]
    finally:
        assert trap.stop() == 0
