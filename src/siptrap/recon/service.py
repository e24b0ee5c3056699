"""The recon service: takes asks from the analysis (any thread), checks the hosts they
name under the guards, and puts each result on the bus as a `recon.result` event.

It runs on the honeypot's event loop but off the network path: asks wait in a bounded
queue (full: dropped and counted), a few workers take them, every probe waits for the
global and per-target rate limits and spends the source's budget, and every check has a
timeout. A probe the guards forbid is reported `refused_by_guard` and nothing is sent.
Names are checked for shape, resolved through the configured resolvers, and every address
they resolve to must pass the guards; the address used is the one resolved (pinned).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..analysis.modes import Mode
from ..analysis.reconnaissance import Probe, ReconAsk
from ..events.record import Event
from . import p0f, ports, rdap, route, sip_probe
from .dns import Lookups
from .geoip import GeoIp
from .guard import Guard, parse_address, valid_hostname
from .limits import Budget, Expiring, Pacer
from .settings import ReconConfig, modes_of

log = logging.getLogger(__name__)
MAX_CACHE = 20_000
RETRY = 60.0  # seconds before a check that timed out is tried again
SENDS_TO_TARGET = frozenset({"sip_probe", "port", "route"})
Key = tuple[str, str, int, str]
Cached = tuple[str, dict[str, Any], str | None]  # outcome, detail, the address used


class Reconnaissance:
    def __init__(
        self,
        config: ReconConfig,
        emit: Callable[[Event], None],
        sensor: str,
        mode: str = "passive",
        own: tuple[str, ...] = (),
        modes: tuple[Mode, ...] = (),
    ) -> None:
        """`modes`: those the rule files define (with passive, active and `[recon] modes`
        they are the modes `set_mode` accepts); raises ModeError for a name given twice,
        ValueError for a `mode` that is not one of them."""
        self.config = config
        self.emit = emit
        self.sensor = sensor
        self.modes = modes_of(config, modes)
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}: {', '.join(self.modes)}")
        self.mode = mode
        self.guard = Guard.from_lists(config.allow, (*config.never, *own))
        self.lookups = Lookups(config.resolvers, config.timeout)
        self.geoip = GeoIp(config.geoip_db, config.geoip_asn_db)
        self.pacer = Pacer(config.rate, config.target_rate)
        self.budget = Budget(config.budget, config.ttl)
        self._lock = threading.Lock()
        self._pending = 0
        self._known: Expiring[Key, bool] = Expiring(MAX_CACHE)  # queued or cached, until
        self._cache: Expiring[Key, Cached] = Expiring(MAX_CACHE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[ReconAsk] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.refused = 0
        self.probes = 0

    # -- control -------------------------------------------------------------------------
    @property
    def current(self) -> Mode:
        return self.modes[self.mode]

    @property
    def checks(self) -> frozenset[str]:
        return self.current.checks

    def known(self, mode: str) -> bool:
        return mode in self.modes

    def set_mode(self, mode: str) -> str:
        """Switch modes at once (queued asks run under the new one); the previous mode.
        Raises ValueError for a mode that is not defined."""
        if mode not in self.modes:
            raise ValueError(
                f"unknown mode {mode!r}: passive, active or a mode of the rule files "
                f"({', '.join(m for m in self.modes if m not in ('passive', 'active')) or 'none'})"
            )
        previous, self.mode = self.mode, mode
        return previous

    def set_modes(self, modes: tuple[Mode, ...]) -> None:
        """The modes of newly read rule files (`rules reload`). Raises ModeError for a
        name given twice, ValueError when the mode in force is no longer defined (the
        old modes stay)."""
        table = modes_of(self.config, modes)
        if self.mode not in table:
            raise ValueError(f"the mode in force, {self.mode!r}, is not in the new rules")
        self.modes = table

    def wants(self, probe: Probe) -> bool:
        """Whether the mode in force runs this probe (the board asks only for those)."""
        return self.current.skips(probe) is None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._workers = [
            asyncio.create_task(self._work(), name=f"recon-{i}") for i in range(self.config.workers)
        ]

    async def aclose(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        self._loop = None
        self.geoip.close()

    def idle(self) -> str | None:
        """Why no ask would be taken now (passive mode), or None."""
        return None if self.current.sends else f"{self.mode} mode"

    def submit(self, ask: ReconAsk) -> str | None:
        """Take an ask (from any thread): None when taken, else why not."""
        if not self.current.sends:
            return f"{self.mode} mode"
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return "recon is not running"
        now = time.monotonic()
        with self._lock:
            if self._pending >= self.config.queue_size:
                self.dropped += 1
                return "recon queue full"
            probes = tuple(p for p in ask.probes if self._known.get(p.key, now) is None)
            if not probes:
                return None
            for probe in probes:
                self._known.put(probe.key, True, now, until=now + self.config.ttl)
            self._pending += 1
        loop.call_soon_threadsafe(queue.put_nowait, ReconAsk(ask.source, probes, ask.call_id))
        return None

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            ask = await self._queue.get()
            with self._lock:
                self._pending -= 1
            try:
                await self.run(ask)
            except Exception:  # one bad ask must not stop the worker
                log.exception("recon failed for %s", ask.source)

    # -- one ask -------------------------------------------------------------------------
    async def run(self, ask: ReconAsk) -> None:
        """Every probe of an ask, DNS first (it pins the names the others use)."""
        src = parse_address(ask.source)
        src_refusal = "not an address" if src is None else self.guard.refusal(src)
        pinned: dict[str, tuple[str | None, str | None]] = {}
        for probe in sorted(ask.probes, key=lambda p: p.check != "dns"):
            started = time.monotonic()
            outcome, detail, address, cached = await self._probe(
                ask.source, probe, src_refusal, pinned
            )
            if outcome in ("refused_by_guard", "skipped"):
                with self._lock:
                    self._known.pop(probe.key)
            elif outcome == "timeout":  # asked again after a while, not after ttl
                now = time.monotonic()
                with self._lock:
                    self._known.put(probe.key, True, now, until=now + RETRY)
            self._emit(ask.source, probe, outcome, detail, address, started, cached)

    async def _probe(
        self,
        source: str,
        probe: Probe,
        src_refusal: str | None,
        pinned: dict[str, tuple[str | None, str | None]],
    ) -> tuple[str, dict[str, Any], str | None, bool]:
        skip = self.current.skips(probe)
        if skip is not None:  # the mode changed since the ask was taken
            return "skipped", {"reason": skip, "mode": self.mode}, None, False
        if src_refusal is not None:
            self.refused += 1
            return (
                "refused_by_guard",
                {"reason": f"the source {source}: {src_refusal}"},
                None,
                False,
            )
        got = self._cache.get(probe.key, time.monotonic())
        if got is not None:
            if probe.check == "dns" and parse_address(probe.target) is None:
                pinned[probe.target.lower()] = self._pin(got[1].get("addresses") or [], {})
            return got[0], got[1], got[2], True
        if probe.check == "dns":
            outcome, detail, address = await self._dns(source, probe.target, pinned)
        else:
            name = parse_address(probe.target) is None and probe.target.lower() not in pinned
            if name and valid_hostname(probe.target) and not self.budget.take(source):
                return "skipped", {"reason": f"the budget of source {source} is spent"}, None, False
            address, refusal = await self._address(probe.target, pinned)
            if refusal is not None or address is None:
                self.refused += 1
                return "refused_by_guard", {"reason": refusal or "no address"}, None, False
            if not self.budget.take(source):
                return "skipped", {"reason": f"the budget of source {source} is spent"}, None, False
            outcome, detail = await self._checked(probe, address)
        self._remember(probe.key, outcome, detail, address)
        return outcome, detail, address, False

    async def _dns(
        self, source: str, target: str, pinned: dict[str, tuple[str | None, str | None]]
    ) -> tuple[str, dict[str, Any], str | None]:
        ip = parse_address(target)
        refusal = None
        if ip is not None:
            refusal = self.guard.refusal(ip)
        elif not valid_hostname(target):
            refusal = "not a valid host name"
        if refusal is not None:
            self.refused += 1
            return "refused_by_guard", {"reason": refusal}, None
        if not self.budget.take(source):  # lookups count too: names are the attacker's
            return "skipped", {"reason": f"the budget of source {source} is spent"}, None
        if ip is not None:
            await self.pacer.wait(None)
            outcome, detail = await self._timed(self.lookups.reverse(str(ip)), "dns", str(ip))
            return outcome, detail, str(ip)
        await self.pacer.wait(None)
        outcome, detail = await self._timed(self.lookups.forward(target), "dns", target)
        pinned[target.lower()] = self._pin(detail.get("addresses") or [], detail)
        return outcome, detail, pinned[target.lower()][0]

    def _pin(self, addresses: list[str], detail: dict[str, Any]) -> tuple[str | None, str | None]:
        """The address a name's probes use, or why none may be used: every address the
        name resolves to must pass the guards (a name pointing inside is refused)."""
        forbidden = []
        for text in addresses:
            ip = parse_address(text)
            refusal = "not an address" if ip is None else self.guard.refusal(ip)
            if refusal is not None:
                forbidden.append(f"{text}: {refusal}")
        if forbidden:
            detail["forbidden"] = forbidden
            return None, f"the name resolves to a forbidden address ({forbidden[0]})"
        if not addresses:
            return None, "the name does not resolve"
        return addresses[0], None

    async def _address(
        self, target: str, pinned: dict[str, tuple[str | None, str | None]]
    ) -> tuple[str | None, str | None]:
        ip = parse_address(target)
        if ip is not None:
            return str(ip), self.guard.refusal(ip)
        if not valid_hostname(target):
            return None, "not a valid host name"
        name = target.lower()
        if name not in pinned:  # no dns probe of it came first: resolve it now, and pin
            _outcome, detail = await self._timed(self.lookups.forward(target), "dns", target)
            pinned[name] = self._pin(detail.get("addresses") or [], detail)
        return pinned[name]

    async def _checked(self, probe: Probe, address: str) -> tuple[str, dict[str, Any]]:
        # every check counts against the global rate; those that send to the host also
        # against its own rate
        await self.pacer.wait(address if probe.check in SENDS_TO_TARGET else None)
        self.probes += 1
        return await self._timed(self._run_check(probe, address), probe.check, address)

    async def _timed(self, work: Any, check: str, target: str) -> tuple[str, dict[str, Any]]:
        limit = self.config.timeout * (4 if check == "route" else 1) + 0.5
        try:
            result: tuple[str, dict[str, Any]] = await asyncio.wait_for(work, limit)
        except TimeoutError:
            return "timeout", {"error": f"no result in {limit:g}s"}
        except Exception as exc:  # a check that breaks is a failed check, not a crash
            log.debug("recon %s of %s failed", check, target, exc_info=True)
            return "failed", {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return result

    async def _run_check(self, probe: Probe, address: str) -> tuple[str, dict[str, Any]]:
        c = self.config
        check = probe.check
        if check == "rdap":
            return await rdap.lookup(c.rdap_url, address, c.timeout, c.rdap_ca_file)
        if check == "geoip":
            return await asyncio.to_thread(self.geoip.lookup, address)
        if check == "sip_probe":
            return await sip_probe.probe(address, probe.port, probe.transport, c.timeout)
        if check == "port":
            wanted = ((probe.transport or "udp", probe.port),) if probe.port else c.port_list()
            return await ports.check(address, wanted, c.timeout)
        if check == "route":
            return await route.trace(c.traceroute, address, c.route_hops, c.timeout * 4)
        if check == "os":
            if not c.p0f_socket:
                return "skipped", {"reason": "no p0f socket configured"}
            return await p0f.ask(c.p0f_socket, address, c.timeout)
        return "skipped", {"reason": f"unknown check {check}"}

    def _remember(
        self, key: Key, outcome: str, detail: dict[str, Any], address: str | None
    ) -> None:
        if outcome in ("refused_by_guard", "skipped"):
            return
        ttl = min(RETRY, self.config.ttl) if outcome == "timeout" else self.config.ttl
        now = time.monotonic()
        self._cache.put(key, (outcome, detail, address), now, until=now + ttl)

    def _emit(
        self,
        source: str,
        probe: Probe,
        outcome: str,
        detail: dict[str, Any],
        address: str | None,
        started: float,
        cached: bool,
    ) -> None:
        fields = {
            "check": probe.check,
            "target": probe.target,
            "outcome": outcome,
            "detail": detail,
            "duration": round(time.monotonic() - started, 4),
            "source": source,
            "address": address,
            "port": probe.port or None,
            "protocol": probe.transport or None,
            "cached": cached,
        }
        self.emit(Event("recon.result", time.time(), self.sensor, None, fields))
