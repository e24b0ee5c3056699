"""Layers only point down: a module of siptrap imports only from its own layer or a lower
one (the order in docs/architecture.md), and no layer below `config` imports `config`.
Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import siptrap

SRC = Path(siptrap.__file__).parent

# Lowest first; names in one tuple are one layer. `settings` (ConfigError, doc) is shared
# by every layer's settings, `bounded` (BoundedLRU, DeadlineQueue) by every layer's
# tables, `memory` (the collector's tuning, malloc_trim) by `app`; `startup` checks the
# data directory for `app`.
ORDER: tuple[tuple[str, ...], ...] = (
    ("settings", "bounded", "memory"),
    ("sip",),
    ("events",),
    ("media",),
    ("endpoint", "upstream"),
    ("transport",),
    ("store",),
    ("analysis",),
    ("outputs", "actions", "recon"),
    ("fleet", "web", "offline"),
    ("config",),
    ("app", "startup"),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(ORDER) for name in names}


def layer_of(relative: Path) -> str:
    """The layer of a module, by its path under src/siptrap: its top package or module."""
    return relative.parts[0].removesuffix(".py")


def imported_layers(source: str, relative: Path) -> set[str]:
    """The siptrap layers a module imports (relative or absolute imports), given its
    source and its path under src/siptrap."""
    package = list(relative.parts[:-1])  # the package the module is in, under siptrap
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:  # `from . import x` at the top of siptrap
                    found |= {alias.name for alias in node.names}
                    continue
                found.add(parts[0])
            elif node.module and node.module.split(".")[0] == "siptrap":
                parts = node.module.split(".")[1:]
                found |= {parts[0]} if parts else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "siptrap" and len(parts) > 1:
                    found.add(parts[1])
    return found & set(RANK)


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_layer_is_in_the_order() -> None:
    tops = {layer_of(p.relative_to(SRC)) for p in modules()}
    assert tops - set(RANK) == set(), "a new package or module: put it in ORDER"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    relative = path.relative_to(SRC)
    layer = layer_of(relative)
    imported = imported_layers(path.read_text(encoding="utf-8"), relative)
    above = {name for name in imported if RANK[name] > RANK[layer]}
    assert not above, f"{path.relative_to(SRC)} ({layer}) imports a higher layer: {above}"


def test_the_checker_sees_violations() -> None:
    """The check itself can fail: relative, absolute, lazy and package-level imports of
    higher layers are all seen, and lower ones are not reported as higher."""
    source = (
        "from ..config import Config\n"
        "import siptrap.app\n"
        "def f():\n    from ..cli import main\n"
        "from .guard import FloodGuard\n"
        "from ..sip.auth import verify\n"
    )
    found = imported_layers(source, Path("endpoint/uas.py"))
    assert found == {"config", "app", "cli", "endpoint", "sip"}
    assert imported_layers("from . import app\n", Path("startup.py")) == {"app"}
    assert {n for n in found if RANK[n] > RANK["endpoint"]} == {"config", "app", "cli"}
