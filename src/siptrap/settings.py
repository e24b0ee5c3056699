"""What every layer's settings share: `ConfigError`, and `doc()` for a settings field
with its one-line documentation (which `siptrap config show` prints as a comment).

It imports nothing of siptrap, so any layer may use it; `config` loads the TOML into
each layer's own settings dataclasses.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is wrong; the message names it."""


def doc(text: str, default: Any) -> Any:
    """A dataclass field with a default and its documentation."""
    return field(default=default, metadata={"doc": text})
