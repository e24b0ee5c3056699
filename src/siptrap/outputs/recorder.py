"""The writer process: events.jsonl and siptrap.db written by a process of their own.

The honeypot's network path, live analysis and sinks share one interpreter lock, so the
recording's Python work (JSON lines, SQLite rows, the `sources` tally) competes with the
answers for one core. `RecordingWriter` is the bus sink that hands each batch, already
flattened and pickled in one call, over a pipe to a child process, which writes it with
the very sinks the honeypot uses in-process (`JsonLinesSink`, `SqliteSink`), so what
is stored is byte for byte the same. The JSON of an event that a sink here already
encoded (`Event.fields_json`) travels with it and is not encoded again.

Guarantees:
- each batch is acknowledged by the child after both sinks wrote it, so a batch is
  written once, in order, and `write` returning means it is on disk as it would be
  in-process (the crash bound of `recording.flush_interval` is unchanged);
- one sink failing in the child does not stop the other; a child that died is started
  again for the next batch (the batch it was writing is counted as failed, never sent
  twice);
- a clean stop (`close`) writes out every batch accepted, closes the sinks and waits
  for the child; a parent killed with SIGKILL leaves the child to write what it got
  and exit on the pipe's end of file. The child ignores SIGINT and SIGTERM (a Ctrl-C or
  a service stop reaching the process group): the parent's stop decides when it ends.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from ..events.record import Event, Peer
from ..store.sqlite import SqliteSink, StoreError
from .jsonl import JsonLinesSink

log = logging.getLogger(__name__)
START_TIMEOUT = 60.0  # seconds the child may take to import and open its files

# (id, ts, sensor, peer fields or None, fields, raw, direction, fields JSON or None)
Flat = tuple[str, float, str, tuple[Any, ...] | None, dict[str, Any], bytes | None, Any, Any]


class RecordingError(Exception):
    """A batch was not (wholly) written by the writer process."""


def flatten(event: Event) -> Flat:
    """What the child needs of an event: plain values (the parsed message stays here)."""
    peer = event.peer
    peer_values = None
    if peer is not None:
        peer_values = (
            peer.transport,
            peer.src_ip,
            peer.src_port,
            peer.dst_ip,
            peer.dst_port,
            peer.connection,
        )
    encoded = event._fields_json  # the JSON a sink here encoded already, if any
    fields, raw = event.fields, event.raw
    return (event.id, event.ts, event.sensor, peer_values, fields, raw, event.direction, encoded)


def rebuild(flat: Flat) -> Event:
    event_id, ts, sensor, peer_values, fields, raw, direction, encoded = flat
    peer = Peer(*peer_values) if peer_values is not None else None
    event = Event(event_id, ts, sensor, peer, fields, raw, direction)
    if encoded is not None:
        object.__setattr__(event, "_fields_json", encoded)  # frozen: the memo only
    return event


def encode_batch(events: list[Event]) -> bytes:
    """The batch as one pickle; an event whose fields pickle cannot take travels with
    its fields as their JSON says them (what events.jsonl and `events.data` store)."""
    flats = [flatten(e) for e in events]
    try:
        return pickle.dumps(flats, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        pass
    safe = []
    for event, flat in zip(events, flats, strict=True):
        try:
            pickle.dumps(flat[4], protocol=pickle.HIGHEST_PROTOCOL)
            safe.append(flat)
        except (pickle.PicklingError, TypeError, AttributeError):
            import orjson

            fields = orjson.loads(event.fields_json())
            safe.append((*flat[:4], fields, flat[5], flat[6], event.fields_json()))
    return pickle.dumps(safe, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True, slots=True)
class Paths:
    jsonl: Path | None
    sqlite: Path | None


def _open_sinks(paths: Paths) -> list[Any]:
    sinks: list[Any] = []
    if paths.jsonl is not None:
        sinks.append(JsonLinesSink(paths.jsonl))
    if paths.sqlite is not None:
        sinks.append(SqliteSink(paths.sqlite))
    for sink in sinks:
        sink.open()
    return sinks


def _write_all(sinks: list[Any], events: list[Event]) -> list[str]:
    """Every sink writes the batch; the names of those that failed."""
    failed = []
    for sink in sinks:
        try:
            sink.write(events)
        except Exception:
            failed.append(sink.name)
            log.exception("writer process: sink %s failed on %d events", sink.name, len(events))
    return failed


def child_main(receive: Connection, answer: Connection, paths: Paths) -> None:
    """The writer process: open the sinks, then write every batch until told to stop
    (an empty message) or until the parent is gone (end of file on the pipe)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sinks = _open_sinks(paths)
    except (OSError, sqlite3.Error, StoreError) as exc:  # what the app reports at start
        answer.send(("error", "os" if isinstance(exc, OSError) else "store", str(exc)))
        return
    answer.send(("ready", "", ""))
    failures = 0
    while True:
        try:
            data = receive.recv_bytes()
        except (EOFError, OSError):
            break  # the parent is gone: what came is written, close and end
        if not data:
            break
        # The bytes come from our own parent over a private pipe, never from the network.
        events = [rebuild(flat) for flat in pickle.loads(data)]  # noqa: S301
        failed = _write_all(sinks, events)
        failures += len(failed)
        with suppress(OSError):
            answer.send_bytes(",".join(failed).encode())
    for sink in sinks:
        try:
            sink.close()
        except Exception:
            log.exception("writer process: sink %s failed to close", sink.name)
    with suppress(OSError):
        answer.send(("closed", str(failures), ""))


def _path_arg(path: Path | None) -> str:
    return "-" if path is None else str(path)


def main(argv: list[str]) -> None:
    """`python -m siptrap.outputs.recorder IN_FD OUT_FD JSONL SQLITE` (the parent runs it:
    a fresh interpreter that imports only the recording, not the whole honeypot)."""
    logging.basicConfig(level=logging.WARNING, format="siptrap writer: %(levelname)s %(message)s")
    in_fd, out_fd, jsonl, sqlite = argv
    paths = Paths(None if jsonl == "-" else Path(jsonl), None if sqlite == "-" else Path(sqlite))
    child_main(
        Connection(int(in_fd), writable=False), Connection(int(out_fd), readable=False), paths
    )


class RecordingWriter:
    """The bus sink for events.jsonl and siptrap.db written by a writer process."""

    name = "recording"

    def __init__(self, jsonl: Path | None, sqlite: Path | None) -> None:
        self.paths = Paths(
            Path(jsonl) if jsonl is not None else None, Path(sqlite) if sqlite is not None else None
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._receive: Connection | None = None
        self.restarts = 0
        self.failed_batches = 0
        self.written = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def open(self) -> None:
        from_parent, to_child = os.pipe()  # not inherited by anything else (PEP 446)
        from_child, to_parent = os.pipe()
        args = [sys.executable, "-m", __name__, str(from_parent), str(to_parent)]
        args += [_path_arg(self.paths.jsonl), _path_arg(self.paths.sqlite)]
        try:
            process = subprocess.Popen(args, pass_fds=(from_parent, to_parent), stdin=DEVNULL)
        finally:
            os.close(from_parent)
            os.close(to_parent)
        send, receive = Connection(to_child, readable=False), Connection(from_child, writable=False)
        state, kind, message = "ended", "store", "the writer process ended while opening its files"
        try:
            if receive.poll(START_TIMEOUT):
                state, kind, message = receive.recv()
            else:
                message = "the writer process did not start"
        except (EOFError, OSError):
            pass
        if state != "ready":
            send.close()
            receive.close()
            process.kill()
            process.wait()
            raise (OSError(message) if kind == "os" else StoreError(message))
        self._process, self._send, self._receive = process, send, receive

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def write(self, events: list[Event]) -> None:
        if self._send is None or not self._alive():
            self._restart()
        send, receive = self._send, self._receive
        assert send is not None and receive is not None
        try:
            send.send_bytes(encode_batch(events))
            answer = receive.recv_bytes()
        except (EOFError, OSError) as exc:
            self.failed_batches += 1
            self._discard()
            raise RecordingError(f"the writer process ended with {len(events)} events") from exc
        if answer:
            self.failed_batches += 1
            raise RecordingError(f"writer process: {answer.decode()} failed on a batch")
        self.written += len(events)

    def _discard(self) -> None:
        for conn in (self._send, self._receive):
            if conn is not None:
                conn.close()
        self._send = self._receive = None
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _restart(self) -> None:
        self._discard()
        log.warning("the writer process is gone: starting it again")
        self.restarts += 1
        self.open()

    def close(self) -> None:
        send, receive, process = self._send, self._receive, self._process
        self._send = self._receive = None
        if send is None or receive is None or process is None:
            return
        try:
            send.send_bytes(b"")
            if receive.poll(300):
                state, failures, _ = receive.recv()
                if state == "closed" and failures != "0":
                    log.warning("writer process: %s sink failures", failures)
        except (EOFError, OSError):
            log.warning("the writer process ended before its clean stop")
        finally:
            send.close()
            receive.close()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
