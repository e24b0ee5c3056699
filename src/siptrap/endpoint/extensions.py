"""The extension plan: which virtual users exist, their passwords and call behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ConfigError

BEHAVIOURS = ("ring", "answer", "busy", "redirect", "hangup")
MEDIA_MODES = ("play", "silence", "echo", "ivr")
MAX_EXTENSIONS = 100_000


@dataclass(frozen=True, slots=True)
class Extension:
    user: str
    password: str | None = None  # None: registration and calls accepted without a challenge
    behaviour: str = "ring"
    answer_after: float = 0.0  # seconds of ringing before 200 OK (behaviour "answer")
    ring_timeout: float = 60.0  # seconds of ringing before 480 (behaviour "ring")
    redirect_to: str | None = None  # Contact of the 302 (behaviour "redirect")
    call_duration: float = 30.0  # an answered call is hung up (BYE) after this long
    media: str = "play"
    media_file: str | None = None


def expand_users(spec: str) -> list[str]:
    """`"100-119,200, 300-301"` -> the users listed; numeric ranges keep their width."""
    users: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        low, dash, high = item.partition("-")
        if dash and low.isdigit() and high.isdigit():
            start, end = int(low), int(high)
            if end < start:
                raise ConfigError(f"extension range {item!r} runs backwards")
            if end - start + 1 + len(users) > MAX_EXTENSIONS:
                raise ConfigError(f"more than {MAX_EXTENSIONS} extensions")
            width = len(low) if low.startswith("0") else 0
            users.extend(str(n).zfill(width) for n in range(start, end + 1))
        else:
            users.append(item)
    return users


class ExtensionPlan:
    """Lookup of configured extensions by user part."""

    def __init__(self, extensions: list[Extension]) -> None:
        if len(extensions) > MAX_EXTENSIONS:
            raise ConfigError(f"more than {MAX_EXTENSIONS} extensions")
        self._by_user = {ext.user: ext for ext in extensions}

    def get(self, user: str | None) -> Extension | None:
        if user is None:
            return None
        return self._by_user.get(user)

    def __len__(self) -> int:
        return len(self._by_user)

    def users(self) -> list[str]:
        return list(self._by_user)

    def put(self, ext: Extension) -> None:
        """Add or replace one extension (runtime control)."""
        if ext.user not in self._by_user and len(self._by_user) >= MAX_EXTENSIONS:
            raise ConfigError(f"more than {MAX_EXTENSIONS} extensions")
        self._by_user[ext.user] = ext

    def remove(self, user: str) -> bool:
        """Remove one extension (runtime control); False if there was none."""
        return self._by_user.pop(user, None) is not None
