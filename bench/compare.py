"""Old against new, side by side in one process: the only honest ratio on a noisy,
shared machine. An older checkout's `src/siptrap` is loaded under another package name
(`siptrap_old`), and each stage is timed alternately, old then new, several rounds; the
ratio is of the medians.

    git archive <commit> src | tar -x -C /tmp/old
    .venv/bin/python bench/compare.py /tmp/old/src [--stage parse|endpoint|sinks]...
        [--rounds 7] [--flows 1000]

Stages: `parse` (bench_parse.py's "parse + honeypot fields" on INVITE, REGISTER,
OPTIONS, each copy with its own Via branch, From tag and Call-ID as in real traffic),
`endpoint` (profile_endpoint.py's network path per scenario), `sinks` (the JSON lines
and SQLite sinks writing the same events), `analysis` (the live analysis sink reading
each tree's own events for the same flows: µs per flow, rules loaded beforehand).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import profile_endpoint as pe
from messages import INVITE, OPTIONS, REGISTER

OLD = "siptrap_old"


def load_old(src: Path) -> None:
    """Make the checkout at src/siptrap importable as `siptrap_old` (its imports are
    relative, so a renamed copy is a separate package)."""
    where = Path(tempfile.mkdtemp(prefix="siptrap-old-"))
    shutil.copytree(src / "siptrap", where / OLD)
    sys.path.insert(0, str(where))


def fields_of(parse: Callable[[bytes], Any]) -> Callable[[bytes], object]:
    """bench_parse.honeypot_fields, with the given parse function."""

    def honeypot_fields(data: bytes) -> object:
        msg = parse(data)
        top = msg.top_via
        fro, to = msg.from_addr, msg.to_addr
        return (
            msg.method,
            msg.uri.user,
            msg.call_id,
            msg.cseq,
            top.branch if top else None,
            fro.user if fro else None,
            fro.tag if fro else None,
            to.user if to else None,
            msg.user_agent,
            msg.header("authorization"),
            msg.defect_names,
        )

    return honeypot_fields


def variants(data: bytes, n: int) -> list[bytes]:
    """n copies of a message with the values that differ per message in real traffic
    (Via branch, From tag, Call-ID) made unique, so no parse result can be reused."""
    out = []
    for i in range(n):
        varied = re.sub(rb"(;branch=[^;\r\n]+)", rb"\g<1>x%d" % i, data, count=1)
        varied = re.sub(rb"(;tag=[^;\r\n]+)", rb"\g<1>x%d" % i, varied, count=1)
        out.append(re.sub(rb"(Call-ID: [^\r\n]+)", rb"\g<1>x%d" % i, varied, count=1))
    return out


def naive_split(data: bytes) -> dict[str, str]:
    """The cheapest reading of a message (PERFORMANCE-NOTES' "naive split of lines",
    3.1 µs for this INVITE on the quiet machine): a yardstick for how busy it is now."""
    head = data.partition(b"\r\n\r\n")[0].decode("utf-8", "surrogateescape")
    return {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    }


def yardstick(n: int) -> float:
    messages = variants(INVITE, n)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for data in messages:
            naive_split(data)
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times) * 1e6


def parse_stage(n: int) -> dict[str, tuple[Callable[[], float], Callable[[], float]]]:
    old_fields = fields_of(importlib.import_module(f"{OLD}.sip").parse)
    new_fields = fields_of(importlib.import_module("siptrap.sip").parse)

    def timer(fn: Callable[[bytes], object], messages: list[bytes]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for data in messages:
                fn(data)
            return (time.perf_counter() - start) / len(messages)

        return run

    return {
        f"parse+fields {name}": (timer(old_fields, msgs), timer(new_fields, msgs))
        for name, data in (("INVITE", INVITE), ("REGISTER", REGISTER), ("OPTIONS", OPTIONS))
        for msgs in [variants(data, n)]
    }


def endpoint_stage(flows: int) -> dict[str, tuple[Callable[[], float], Callable[[], float]]]:
    old_pkg, new_pkg = pe.package(OLD), pe.package()

    def timer(pkg: Any, scenario: Callable[[pe.Driver, int], None]) -> Callable[[], float]:
        def run() -> float:
            driver = pe.Driver(pkg)
            for i in range(flows):
                scenario(driver, i)
            return driver.busy / flows

        return run

    return {
        f"endpoint {name}": (timer(old_pkg, fn), timer(new_pkg, fn))
        for name, fn in pe.SCENARIOS.items()
    }


def sinks_stage(flows: int) -> dict[str, tuple[Callable[[], float], Callable[[], float]]]:
    out = {}
    for name, scenario in pe.SCENARIOS.items():
        driver = pe.Driver()
        for i in range(flows):
            scenario(driver, i)
        events = driver.events
        for sink_name, module, cls in (
            ("jsonl", "outputs.jsonl", "JsonLinesSink"),
            ("sqlite", "store.sqlite", "SqliteSink"),
        ):
            old_cls = getattr(importlib.import_module(f"{OLD}.{module}"), cls)
            new_cls = getattr(importlib.import_module(f"siptrap.{module}"), cls)
            out[f"{sink_name} {name}"] = (
                sink_timer(old_cls, events, flows),
                sink_timer(new_cls, events, flows),
            )
    return out


def sink_timer(cls: Any, events: list[Any], flows: int) -> Callable[[], float]:
    return timed_sink(lambda tmp: cls(tmp / "out"), events, flows)


def timed_sink(make: Callable[[Path], Any], events: list[Any], flows: int) -> Callable[[], float]:
    """CPU per flow of the sink `make(tmp_dir)` writing `events` in batches of 2048."""

    def run() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            sink = make(Path(tmp))
            sink.open()
            start = time.thread_time()  # this thread's CPU: the sink's ticker is not in it
            for i in range(0, len(events), 2048):
                sink.write(events[i : i + 2048])
            elapsed = time.thread_time() - start
            sink.close()
        return elapsed / flows

    return run


def analysis_stage(flows: int) -> dict[str, tuple[Callable[[], float], Callable[[], float]]]:
    out = {}
    for name, scenario in pe.SCENARIOS.items():
        timers = []
        for pkg_name in (OLD, "siptrap"):
            driver = pe.Driver(pe.package(pkg_name))
            for i in range(flows):
                scenario(driver, i)
            timers.append(analysis_timer(pkg_name, driver.events, flows))
        out[f"analysis {name}"] = (timers[0], timers[1])
    return out


def analysis_timer(pkg_name: str, events: list[Any], flows: int) -> Callable[[], float]:
    config_from_dict = importlib.import_module(f"{pkg_name}.config").config_from_dict
    analysis_sinks = importlib.import_module(f"{pkg_name}.app").analysis_sinks
    config = config_from_dict(tomllib.loads(pe.CONFIG))
    return timed_sink(lambda tmp: analysis_sinks(config, tmp, lambda event: None)[0], events, flows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_src", type=Path, help="src directory of the older checkout")
    parser.add_argument(
        "--stage", action="append", choices=("parse", "endpoint", "sinks", "analysis")
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--parses", type=int, default=2000)
    args = parser.parse_args()
    load_old(args.old_src)
    stages = args.stage or ["parse", "endpoint", "sinks", "analysis"]
    pairs: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {}
    if "parse" in stages:
        pairs |= parse_stage(args.parses)
    if "endpoint" in stages:
        pairs |= endpoint_stage(args.flows)
    if "sinks" in stages:
        pairs |= sinks_stage(args.flows)
    if "analysis" in stages:
        pairs |= analysis_stage(args.flows)
    print(f"naive split of the INVITE's lines: {yardstick(args.parses):.1f} µs (3.1 when quiet)")
    print(f"{'stage':<26}{'old µs':>9}{'new µs':>9}{'old/new':>9}   (medians of {args.rounds})")
    for name, (old, new) in pairs.items():
        old_times, new_times = [], []
        for _ in range(args.rounds):
            old_times.append(old())
            new_times.append(new())
        o, n = statistics.median(old_times) * 1e6, statistics.median(new_times) * 1e6
        print(f"{name:<26}{o:>9.1f}{n:>9.1f}{o / n:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
