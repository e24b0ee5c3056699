"""Writer processes against sink threads: one `siptrap run` per `[recording] writer`,
driven in turn by SIPp (OPTIONS, open loop) at rising rates, interleaved.

For each rate and each mode it prints the failed calls, the rate SIPp kept, and the CPU
per OPTIONS of siptrap's own process (the network path, analysis and, with
writer = "thread", the recording) and of its writer processes, counted from before SIPp
starts until siptrap is idle again (its backlog written). A rate is held when no call
failed and SIPp kept 95 % of it in every round. `2xprocess` (or `2xthread`) runs two
siptraps, each on its own port and driven by its own SIPp at half the rate: the CPU
that two network workers sharing one port with SO_REUSEPORT would have (the kernel gives
each source to one worker), without the sharing of registrations they would need. At
the end all are stopped and their stores checked: every OPTIONS answered must be in
SQLite and in the JSON lines.

    .venv/bin/python bench/bench_writer.py [--rates 500,1000,1500] [--seconds 5]
        [--rounds 1] [--no-analysis] [--modes thread,process,2xprocess]
    .venv/bin/python bench/bench_writer.py --micro 2000 [--rounds 4]

`--micro FLOWS` measures only what recording costs the honeypot's own process per flow
(OPTIONS, REGISTER with digest, call), sink threads against writer processes, on the
events `profile_endpoint.py` produces, in alternating rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from load import NO_ANALYSIS, SCENARIOS, Honeypot, cpu_seconds, run_sipp
from siptrap.events.record import Event
from siptrap.outputs.jsonl import JsonLinesSink
from siptrap.outputs.recorder import ProcessSink
from siptrap.store.sqlite import SqliteSink


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (its writer processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def start(writer: str, workdir: Path, analysis: bool) -> Honeypot:
    workdir.mkdir(parents=True)
    hp = Honeypot(workdir, "" if analysis else NO_ANALYSIS)
    old = "sqlite = true\n"
    hp.config.write_text(hp.config.read_text().replace(old, f'{old}writer = "{writer}"\n'))
    hp.start()
    return hp


def setup(mode: str, workdir: Path, analysis: bool) -> list[Honeypot]:
    """`thread`, `process`, or `2x` + one of them: two siptraps side by side, each on
    its own port with its own SIPp at half the rate (what two SO_REUSEPORT workers on
    one port would be given by the kernel, one source to one worker)."""
    count, writer = (2, mode[2:]) if mode.startswith("2x") else (1, mode)
    return [start(writer, workdir / f"{mode}-{i}", analysis) for i in range(count)]


def step(hps: list[Honeypot], rate: float, seconds: float) -> dict[str, float]:
    scenario = SCENARIOS["options"]
    writers = [pid for hp in hps for pid in children(hp.pid)]
    mains = [hp.pid for hp in hps]
    main0, writers0 = cpu_of(mains), cpu_of(writers)
    share = rate / len(hps)
    with ThreadPoolExecutor(len(hps)) as pool:
        runs = [pool.submit(run_sipp, scenario, hp.port, share, seconds, hp.workdir) for hp in hps]
        results = [run.result() for run in runs]
    for hp in hps:
        hp.wait_idle()
    calls = max(1, sum(r.successful for r in results))
    return {
        "failed": sum(r.failed for r in results),
        "kept": sum(r.rate for r in results) / rate if rate else 0.0,
        "main_us": (cpu_of(mains) - main0) / calls * 1e6,
        "writers_us": (cpu_of(writers) - writers0) / calls * 1e6,
        "answered": calls,
    }


def parent_cpu(sink: Any, events: list[Event], fresh: bool, batch: int = 512) -> float:
    """CPU seconds this process spends for `sink` to write `events`, open and close
    excluded. `fresh`: the fields' JSON not yet encoded (the first sink to see an event
    encodes it, the others reuse it, as on the bus)."""
    for event in events if fresh else ():
        object.__setattr__(event, "_fields_json", None)  # the memo, as a fresh event
    sink.open()
    start = time.process_time()
    for i in range(0, len(events), batch):
        sink.write(events[i : i + batch])
    spent = time.process_time() - start
    sink.close()
    return spent


def micro(flows: int, rounds: int) -> None:
    """The recording's CPU in the honeypot's own process, per flow: sink threads
    against writer processes, on the events `profile_endpoint.py` makes, alternating."""
    from profile_endpoint import SCENARIOS as FLOWS
    from profile_endpoint import Driver

    head = "µs per flow in the honeypot: jsonl (with the JSON encoding)"
    print(f"{'scenario':>9} {head:>60} {'sqlite':>7} {'both':>6}")
    for name, flow in FLOWS.items():
        driver = Driver()
        for n in range(flows):
            flow(driver, n)
        events = driver.events
        best: dict[str, list[float]] = {"thread": [9e9, 9e9], "process": [9e9, 9e9]}
        for r in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                for mode in ("thread", "process") if r % 2 == 0 else ("process", "thread"):
                    jsonl, db = Path(tmp) / f"{mode}.jsonl", Path(tmp) / f"{mode}.db"
                    if mode == "thread":
                        sinks: list[Any] = [JsonLinesSink(jsonl), SqliteSink(db)]
                    else:
                        sinks = [ProcessSink("jsonl", jsonl), ProcessSink("sqlite", db)]
                    for i, sink in enumerate(sinks):
                        spent = parent_cpu(sink, events, i == 0) / flows * 1e6
                        best[mode][i] = min(best[mode][i], spent)
        for mode, (j, q) in best.items():
            print(f"{name:>9} {mode:>51} {j:>8.1f} {q:>7.1f} {j + q:>6.1f}")
        ratio = sum(best["process"]) / sum(best["thread"])
        print(f"{'':>9} {'process / thread':>51} {'':>8} {'':>7} {ratio:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="thread,process,2xprocess")
    parser.add_argument("--no-analysis", action="store_true")
    parser.add_argument("--micro", type=int, metavar="FLOWS", help="only the in-process part")
    args = parser.parse_args()
    if args.micro:
        micro(args.micro, max(2, args.rounds))
        return
    modes = args.modes.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        hps = {m: setup(m, Path(tmp), not args.no_analysis) for m in modes}
        for mode, group in hps.items():
            print(mode, [(hp.pid, children(hp.pid)) for hp in group])
        answered = dict.fromkeys(modes, 0)
        held = dict.fromkeys(modes, 0.0)
        clean = dict.fromkeys(modes, 0)  # rounds with no failed call and 95 % kept
        head = ("rate", "mode", "failed", "kept", "main µs", "writers µs")
        print("{:>6} {:>9} {:>7} {:>6} {:>8} {:>10}".format(*head))
        for rate in rates:
            main_us: dict[str, list[float]] = {m: [] for m in modes}
            passed = dict.fromkeys(modes, 0)
            for _ in range(args.rounds):
                for mode in modes:
                    out = step(hps[mode], rate, args.seconds)
                    answered[mode] += int(out["answered"])
                    main_us[mode].append(out["main_us"])
                    passed[mode] += out["failed"] == 0 and out["kept"] >= 0.95
                    print(
                        f"{rate:>6.0f} {mode:>9} {out['failed']:>7.0f} {out['kept']:>6.1%}"
                        f" {out['main_us']:>8.0f} {out['writers_us']:>10.0f}",
                        flush=True,
                    )
            for mode in modes:
                clean[mode] += passed[mode]
                if passed[mode] == args.rounds:  # held: every round
                    held[mode] = max(held[mode], rate)
            base = min(main_us[modes[0]])
            ratios = ", ".join(f"{m} {min(main_us[m]) / base:.2f}" for m in modes[1:])
            print(f"{'':>6} main CPU per OPTIONS (best round) against {modes[0]}: {ratios}")
        for mode, group in hps.items():
            stored = [0, 0]
            for hp in group:
                hp.stop()
                counts = hp.recorded()
                stored[0] += counts["sqlite_requests"]
                stored[1] += counts["jsonl_requests"]
            print(
                f"{mode}: held {held[mode]:.0f}/s (every round), clean rounds {clean[mode]}"
                f" of {args.rounds * len(rates)}; answered {answered[mode]},"
                f" stored {stored[0]} in SQLite and {stored[1]} in JSON lines"
            )


if __name__ == "__main__":
    main()
