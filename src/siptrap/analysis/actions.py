"""Running the commands of rules' `system` actions: argument vectors, never a shell.

A command is run with `subprocess.run(argv, shell=False)`, stdin closed, output discarded
(its first bytes are logged on failure), killed after a timeout, in a small thread pool
(`concurrency` at once). Commands that cannot start at once wait in a bounded queue; when
it is full they are dropped and counted: a flood of firings can never become a fork bomb.
No shell or interpreter is ever handed code from arguments (`system_policy`): the rule
parser refuses such actions, and the runner checks each command again before it starts.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from .evaluate import Command
from .system_policy import refusal

log = logging.getLogger(__name__)
MAX_WAITING = 100
MAX_LOGGED = 200


class CommandRunner:
    def __init__(self, timeout: float = 10.0, concurrency: int = 2) -> None:
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix="rule-cmd"
        )
        self.slots = threading.BoundedSemaphore(max(1, concurrency) + MAX_WAITING)
        self.started = 0
        self.dropped = 0
        self.failed = 0
        self.timed_out = 0
        self.refused = 0

    def __call__(self, command: Command) -> None:
        refused = refusal(command.argv, expanded=True)  # the parser refused these already
        if refused is not None:
            self.refused += 1
            log.warning("rule %s: system action refused: %s", command.rule, refused)
            return
        if not self.slots.acquire(blocking=False):
            self.dropped += 1
            log.warning("rule %s: system action dropped (too many waiting)", command.rule)
            return
        self.started += 1
        self.pool.submit(self._run, command)

    def _run(self, command: Command) -> None:
        try:
            result = subprocess.run(  # an argument vector, no shell
                list(command.argv),
                shell=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
            if result.returncode != 0:
                self.failed += 1
                log.warning(
                    "rule %s: %s exited %d: %r",
                    command.rule,
                    command.argv[0],
                    result.returncode,
                    result.stderr[:MAX_LOGGED],
                )
        except subprocess.TimeoutExpired:
            self.timed_out += 1
            log.warning("rule %s: %s killed after %ss", command.rule, command.argv[0], self.timeout)
        except OSError as exc:
            self.failed += 1
            log.warning("rule %s: %s could not run: %s", command.rule, command.argv[0], exc)
        finally:
            self.slots.release()

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)
