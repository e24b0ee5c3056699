"""Writer processes against sink threads: one `siptrap run` per `[recording] writer`,
driven in turn by SIPp (OPTIONS, open loop) at rising rates, interleaved.

For each rate and each mode it prints the failed calls, the rate SIPp kept, and the CPU
per OPTIONS of siptrap's own process (the network path, analysis and, with
writer = "thread", the recording) and of its writer processes, counted from before SIPp
starts until siptrap is idle again (its backlog written). A rate is held when no call
failed and SIPp kept 95 % of it. At the end both are stopped and their stores checked:
every OPTIONS answered must be in SQLite and in the JSON lines.

    .venv/bin/python bench/bench_writer.py [--rates 500,1000,1500] [--seconds 5]
        [--rounds 1] [--no-analysis] [--modes thread,process]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from load import NO_ANALYSIS, SCENARIOS, Honeypot, cpu_seconds, run_sipp


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


def start(mode: str, workdir: Path, analysis: bool) -> Honeypot:
    workdir.mkdir(parents=True)
    hp = Honeypot(workdir, "" if analysis else NO_ANALYSIS)
    text = hp.config.read_text().replace("sqlite = true\n", f'sqlite = true\nwriter = "{mode}"\n')
    hp.config.write_text(text)
    hp.start()
    return hp


def step(hp: Honeypot, rate: float, seconds: float, workdir: Path) -> dict[str, float]:
    scenario = SCENARIOS["options"]
    writers = children(hp.pid)
    main0, writers0 = cpu_seconds(hp.pid), cpu_of(writers)
    result = run_sipp(scenario, hp.port, rate, seconds, workdir)
    hp.wait_idle()
    calls = max(1, result.successful)
    return {
        "failed": result.failed,
        "kept": result.rate / rate if rate else 0.0,
        "main_us": (cpu_seconds(hp.pid) - main0) / calls * 1e6,
        "writers_us": (cpu_of(writers) - writers0) / calls * 1e6,
        "answered": result.successful,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="thread,process")
    parser.add_argument("--no-analysis", action="store_true")
    args = parser.parse_args()
    modes = args.modes.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        hps = {m: start(m, Path(tmp) / m, not args.no_analysis) for m in modes}
        for mode, hp in hps.items():
            print(f"{mode}: pid {hp.pid}, writer processes {children(hp.pid)}")
        answered = dict.fromkeys(modes, 0)
        held = dict.fromkeys(modes, 0.0)
        head = ("rate", "mode", "failed", "kept", "main µs", "writers µs")
        print("{:>6} {:>8} {:>7} {:>6} {:>8} {:>10}".format(*head))
        for rate in rates:
            main_us: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.rounds):
                for mode in modes:
                    out = step(hps[mode], rate, args.seconds, Path(tmp) / mode)
                    answered[mode] += int(out["answered"])
                    main_us[mode].append(out["main_us"])
                    if out["failed"] == 0 and out["kept"] >= 0.95:
                        held[mode] = max(held[mode], rate)
                    print(
                        f"{rate:>6.0f} {mode:>8} {out['failed']:>7.0f} {out['kept']:>6.1%}"
                        f" {out['main_us']:>8.0f} {out['writers_us']:>10.0f}",
                        flush=True,
                    )
            if len(modes) == 2:
                a, b = (min(main_us[m]) for m in modes)
                print(f"{'':>6} main CPU per OPTIONS, {modes[1]} / {modes[0]}: {b / a:.2f}")
        for mode, hp in hps.items():
            hp.stop()
            counts = hp.recorded()
            print(
                f"{mode}: held {held[mode]:.0f}/s; answered {answered[mode]},"
                f" stored {counts['sqlite_requests']} in SQLite"
                f" and {counts['jsonl_requests']} in JSON lines"
            )


if __name__ == "__main__":
    main()
