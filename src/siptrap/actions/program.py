"""The `program` action: run an operator's program with an argument vector, never a shell.

`command = ["/usr/local/bin/block", "{src_ip}", "{step}"]`: each `{name}` is replaced by
that fact of the change (names below). Attackers write some of these values (users,
User-Agent): a value is only ever one argument's text, never parsed by a shell, and a
value that starts with '-' (it would read as an option) or holds a NUL is refused.
Output is captured (bounded) into the event; a program past its timeout is killed.
"""

from __future__ import annotations

import re
import subprocess

from .base import ActionFailed, Job
from .settings import ActionSpec, program_refusal

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
NAMES = (
    "src_ip",
    "src_port",
    "transport",
    "step",
    "previous",
    "category",
    "severity",
    "tool",
    "alert_id",
    "reason",
    "expires",
    "from_user",
    "to_user",
    "contact",
    "user_agent",
)
MAX_OUTPUT = 4096
MAX_VALUE = 32768  # one argument (Linux takes up to 128 KiB)


def values_of(job: Job) -> dict[str, str]:
    change = job.change
    values = {name: job.facts.get(name) for name in NAMES}
    values.update(
        src_ip=change.src_ip,
        step=change.step or "none",
        previous=change.previous or "none",
        category=change.category,
        alert_id=change.alert_id,
        reason=change.reason,
        expires=f"{change.expires:.0f}" if change.expires is not None else "",
    )
    return {k: "" if v is None else str(v) for k, v in values.items()}


def argv_for(command: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """The argument vector, or ActionFailed when a value could be taken for an option."""
    out = [command[0]]
    for arg in command[1:]:
        used: list[str] = []

        def fill(match: re.Match[str], used: list[str] = used) -> str:
            name = match.group(1)
            if name not in values:
                return match.group(0)
            used.append(values[name])
            return values[name]

        text = PLACEHOLDER.sub(fill, arg)
        if text.startswith("-") and not arg.startswith("-"):
            raise ActionFailed(f"refused: a value starting with '-' ({text[:32]!r})")
        for value in used:
            if "\x00" in value or len(value) > MAX_VALUE:
                raise ActionFailed("refused: a value with NUL or over 32 KB")
        out.append(text)
    return out


class ProgramAction:
    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec

    def apply(self, job: Job) -> tuple[str, str] | None:
        argv = argv_for(self.spec.command, values_of(job))
        # Checked at start too; again before anything runs, template and filled in.
        why = program_refusal(self.spec.command) or program_refusal(argv)
        if why:
            raise ActionFailed(f"refused: {why}")
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=self.spec.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ActionFailed(f"{argv[0]} did not finish in {self.spec.timeout:g}s") from exc
        except OSError as exc:
            raise ActionFailed(f"{argv[0]} could not run: {exc.strerror}") from exc
        output = (done.stdout + done.stderr)[:MAX_OUTPUT].decode("utf-8", "replace")
        if done.returncode != 0:
            raise ActionFailed(f"{argv[0]} exited {done.returncode}: {output[:500]}")
        return ("run", output)

    def close(self) -> None:
        pass
