"""What running rules on a message gives (`Outcome`, with the `Command`s of `system`
actions), and where a message came from (`Source`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from."""

    ip: str
    port: int = 0
    transport: str = "UDP"
    dst_ip: str = ""  # where it arrived (the honeypot's address), when known
    dst_port: int = 0


@dataclass(frozen=True, slots=True)
class Command:
    """A command a `system` action asks for: a rule name and an argument vector."""

    rule: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running rules on a message concluded and asked for."""

    conclusions: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()
    problems: tuple[str, ...] = ()
    fired: tuple[str, ...] = ()  # names of rules whose action (or action-if-false) ran

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            _merge(self.conclusions, other.conclusions),
            _merge(self.tools, other.tools),
            self.commands + other.commands,
            self.problems + other.problems,
            self.fired + other.fired,
        )


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))
