"""Every TOML snippet in the README loads as a configuration, as a new user would try it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from siptrap.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "siptrap"


def _snippets() -> list[tuple[int, str]]:
    """(line, text) of each ```toml block of the README."""
    text = (ROOT / "README.md").read_text()
    found = []
    for match in re.finditer(r"^```toml\n(.*?)^```$", text, re.S | re.M):
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


SNIPPETS = _snippets()


def test_the_readme_has_its_configuration_snippets() -> None:
    # [sensor], outputs, recon, transport, upstream, actions, policy at least.
    assert len(SNIPPETS) >= 7
    every = "".join(text for _, text in SNIPPETS)
    for section in ("[sensor]", "[[outputs]]", "[recon]", "[transport]", "[[upstream]]"):
        assert section in every
    for section in ("[[actions]]", "[policy]"):
        assert section in every


@pytest.mark.parametrize(("line", "text"), SNIPPETS, ids=[f"line{n}" for n, _ in SNIPPETS])
def test_a_readme_snippet_loads(line: int, text: str, tmp_path: Path) -> None:
    path = tmp_path / f"readme-{line}.toml"
    path.write_text(text)
    load_config(path)  # raises on an unknown key or a bad value


def test_a_readme_snippet_goes_through_config_show(tmp_path: Path) -> None:
    # The command the README names, in a real process, and its output loads again.
    line, text = next((n, t) for n, t in SNIPPETS if "[[upstream]]" in t)
    path = tmp_path / "upstream.toml"
    path.write_text(text)
    done = subprocess.run(
        [str(BIN), "config", "show", "--config", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (line, done.stderr)
    shown = tmp_path / "shown.toml"
    shown.write_bytes(done.stdout)
    assert 'registrar = "udp:127.0.0.1:5080"' in done.stdout.decode()
    load_config(shown)


def test_the_readme_names_every_tool_test_sh_installs() -> None:
    script = (ROOT / "test.sh").read_text()
    match = re.search(r"^APT_TOOLS=\(([^)]*)\)", script, re.M)
    assert match is not None
    tools = match.group(1).split()
    assert "kamailio" in tools
    start = (ROOT / "README.md").read_text().split("## Running the honeypot")[0]
    missing = [tool for tool in tools if f"`{tool}`" not in start]
    assert missing == []
