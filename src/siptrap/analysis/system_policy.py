"""Which programs a rule's `system` action may run: none that reads its arguments as code.

A `system` action is an argument vector run without a shell, and each `%Var` fills one
argument, never more. That is not enough when the program itself is an interpreter:
`/bin/sh -c "echo %UserAgent >> f"` hands attacker text to a shell as code. So:

- shells and interpreters (sh, bash, python, perl, ruby, node, php...) may only be given a
  script file: their first argument must be fixed text that is not an option (so
  `bash ./on_flood.sh %IPSrc` runs; `bash -c ...`, `python3 -c ...`, `perl -e ...` do not);
- programs whose operands are code or another command line (awk, sed, env, xargs, sudo,
  ssh, su, find, timeout, nohup, busybox...) are refused outright: call the program you
  mean directly, or a script of your own.

`refusal(argv)` says why an argument vector is refused (None: it may run); the rule parser
calls it for every `system` action, so `siptrap rules check` and `siptrap run` refuse such
rules, and the command runner checks again before it starts anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .rule_model import FIELD_REF, VARIABLE

# Read a script file named by their first argument, or code given with an option.
INTERPRETERS = frozenset(
    "sh bash dash zsh ksh mksh csh tcsh fish ash yash rc es pwsh powershell "
    "python pypy perl ruby node nodejs deno bun php lua luajit tclsh wish expect "
    "rscript julia osascript jshell groovy scala".split()
)
# Take code, a command line or a program to run as their operands: never safe.
COMMAND_RUNNERS = frozenset(
    "awk gawk mawk nawk sed env xargs sudo doas su ssh rsh find busybox toybox timeout "
    "nohup nice ionice chroot setsid stdbuf taskset unshare nsenter flock watch script "
    "strace ltrace gdb runuser pkexec eval exec command time parallel make m4 "
    "dc bc jq vim vi ex ed emacs".split()
)
_VERSION_SUFFIX = re.compile(r"[\d.]+(?:\.exe)?$|\.exe$")


def program_name(program: str) -> str:
    """`/usr/bin/python3.11` -> `python`: the base name, lower case, version dropped."""
    base = program.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return _VERSION_SUFFIX.sub("", base) or base


def refusal(argv: Sequence[str], expanded: bool = False) -> str | None:
    """Why `argv` may not run, or None: the action's templates (before expansion), or
    with `expanded` the argument vector about to run (its variables already filled)."""
    if not argv:
        return "system needs a command"
    name = program_name(argv[0])
    if name in COMMAND_RUNNERS:
        return (
            f"system program {argv[0]!r} runs code or other commands from its arguments; "
            "call the program you mean directly, or a script of your own"
        )
    if name in INTERPRETERS:
        script = argv[1] if len(argv) > 1 else ""
        if not script or script.startswith("-"):
            return (
                f"system program {argv[0]!r} is an interpreter: its first argument must be "
                "a script file, not an option such as -c or -e (or nothing)"
            )
        if expanded:
            return None
        if VARIABLE.search(script.replace("%%", "")) or FIELD_REF.fullmatch(script):
            return f"system program {argv[0]!r}: the script it runs must be fixed text"
    return None
