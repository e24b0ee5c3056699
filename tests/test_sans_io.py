"""The SIP core does no I/O: no asyncio, socket, time or threading imports anywhere in it,
and every defect name the code records is in the catalogue and the README."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import siptrap.sip
from siptrap.sip.defects import DEFECTS

SIP_DIR = Path(siptrap.sip.__file__).parent
FORBIDDEN = {"asyncio", "socket", "time", "threading", "selectors", "ssl", "subprocess"}
MESSAGE_FILES = ("message.py", "uri.py", "address.py", "via.py", "headers.py")
README = Path(__file__).resolve().parents[1] / "README.md"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_io_modules() -> None:
    files = sorted(SIP_DIR.rglob("*.py"))
    assert files
    for path in files:
        bad = imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {bad}"


def test_every_defect_used_is_catalogued_and_documented() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""Defect\(\s*["']([a-z0-9_]+)["']|append\(\s*["']([a-z0-9_]+)["']\)""")
    for name in MESSAGE_FILES:
        path = SIP_DIR / name
        for match in pattern.finditer(path.read_text()):
            used.add(match.group(1) or match.group(2))
    # uri, address and via append plain names that message.py turns into Defects
    unknown = {u for u in used if u not in DEFECTS}
    assert not unknown, unknown
    readme = README.read_text()
    undocumented = [name for name in DEFECTS if f"`{name}`" not in readme]
    assert not undocumented, undocumented
