"""Writer processes: events.jsonl and siptrap.db written off the network path's core.

The network path, the live analysis and the sink threads share one interpreter lock, so
the recording's Python work (building SQLite rows, the `sources` tally) competes with
the answers for one core. `ProcessSink` stands on the bus in place of the sink it runs
(same name: "jsonl" or "sqlite", so queue depths, drops and the order of the sinks stay
as they were); the bus keeps its bounded queue and drop count here, and each batch goes
over a pipe, already encoded, to a child process that runs the very sink the honeypot
runs in-process (`JsonLinesSink`, `SqliteSink`), so what is stored is byte for byte the
same. A batch is, per event, its id, time, sensor, peer, raw bytes and the JSON of its
fields (`Event.fields_json`: encoded once here, the same bytes for both writers and for
every other sink that writes JSON); the child decodes the fields, and builds the JSON
line's head or the SQLite rows itself.

Guarantees:
- the child acknowledges each batch after its sink wrote it, so `write` returning means
  the batch is where the in-process sink would have put it (the kill -9 bound of
  `recording.flush_interval` is unchanged) and batches are written once, in order;
- a sink failing in the child is reported back as this sink's failure (the bus counts
  and logs it; the other sinks go on);
- a child that died (killed, out of memory), or that has not answered a batch within
  `BATCH_TIMEOUT` (then it is killed), is started again and given the batch again.
  siptrap.db records the last batch it committed (`meta` key `writer_batch`, in the
  batch's own transaction), so a batch committed just before the child died is not
  stored twice; events.jsonl may hold a second copy of the lines a killed child had
  already written (never fewer: evidence is not lost);
- a clean stop (`close`) writes out every batch accepted, closes the sink and waits for
  the child. A parent killed with SIGKILL leaves its children to finish the batch they
  got and end at the pipe's end of file; what was still queued here is lost, as with
  sink threads. The children ignore SIGINT, SIGTERM and SIGHUP (a Ctrl-C, a service stop
  or a closed terminal reaching the process group): the parent's stop, or its end,
  decides when they end.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import uuid
from contextlib import suppress
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from ..events.record import Event, Peer
from ..store.sqlite import SqliteSink, StoreError
from .jsonl import JsonLinesSink

log = logging.getLogger(__name__)
START_TIMEOUT = 60.0  # seconds a child may take to import and open its file
BATCH_TIMEOUT = 120.0  # seconds a child may take over one batch before it is replaced
KINDS = ("jsonl", "sqlite")
MARK_KEY = "writer_batch"  # siptrap.db meta: "<run>:<last batch committed>"
_SEQ = struct.Struct("!Q")

# (id, ts, sensor, peer values or None, fields JSON, raw, direction)
Flat = tuple[str, float, str, tuple[Any, ...] | None, bytes, bytes | None, str | None]


class RecordingError(Exception):
    """A batch was not (wholly) written by a writer process."""


# -- what crosses the pipe ----------------------------------------------------------------
def encode_batch(events: list[Event]) -> bytes:
    """What a writer process needs of a batch: plain values (the parsed message stays
    here), the fields as their JSON (encoded once, the memo every JSON sink shares)."""
    flats: list[Flat] = []
    last: tuple[object, tuple[Any, ...] | None] = (None, None)
    for e in events:
        peer = e.peer
        if peer is not last[0]:  # a request's events and its answer's share one Peer
            values = None if peer is None else (
                peer.transport, peer.src_ip, peer.src_port, peer.dst_ip, peer.dst_port,
                peer.connection,
            )  # fmt: skip
            last = (peer, values)
        raw = e.raw if e.raw is None or type(e.raw) is bytes else bytes(e.raw)
        flats.append((e.id, e.ts, e.sensor, last[1], e.fields_json(), raw, e.direction))
    return pickle.dumps(flats, protocol=pickle.HIGHEST_PROTOCOL)


def decode_batch(data: bytes) -> list[Event]:
    # The bytes come from our own parent over a private pipe, never from the network.
    flats: list[Flat] = pickle.loads(data)  # noqa: S301
    events = []
    peers: dict[tuple[Any, ...], Peer] = {}
    for event_id, ts, sensor, values, fields_json, raw, direction in flats:
        peer = None if values is None else peers.get(values)
        if values is not None and peer is None:
            peer = peers[values] = Peer(*values)
        events.append(
            Event.from_fields_json(event_id, ts, sensor, peer, fields_json, raw, direction)
        )
    return events


# -- the child ----------------------------------------------------------------------------
class _Child:
    """The sink a writer process runs, and the batches it has done."""

    def __init__(self, kind: str, path: Path, run: str) -> None:
        self.kind, self.run = kind, run
        self.jsonl = JsonLinesSink(path) if kind == "jsonl" else None
        self.sqlite = SqliteSink(path) if kind == "sqlite" else None
        self.done = 0  # the last batch of this run written

    def open(self) -> None:
        if self.jsonl is not None:
            self.jsonl.open()
            return
        assert self.sqlite is not None
        self.sqlite.open()
        conn = self.sqlite._conn
        assert conn is not None
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (MARK_KEY,)).fetchone()
        run, _, seq = str(row[0] if row else "").partition(":")
        if run == self.run and seq.isdigit():
            self.done = int(seq)  # started again after a crash: skip what was committed

    def write(self, seq: int, body: bytes) -> None:
        if seq <= self.done:
            return  # committed before the previous child died: not twice
        events = decode_batch(body)
        if self.jsonl is not None:
            self.jsonl.write(events)
        else:
            assert self.sqlite is not None
            self.sqlite.write(events, mark=(MARK_KEY, f"{self.run}:{seq}"))
        self.done = seq

    def close(self) -> None:
        for sink in (self.jsonl, self.sqlite):
            if sink is not None:
                sink.close()


def serve(receive: Any, answer: Any, child: _Child) -> None:
    """Open the sink, then write every batch until told to stop (an empty message) or
    until the parent is gone (end of file on the pipe); then close the sink."""
    try:
        child.open()
    except (OSError, sqlite3.Error, StoreError) as exc:  # what the app reports at start
        answer.send(("error", "os" if isinstance(exc, OSError) else "store", str(exc)))
        return
    answer.send(("ready", "", ""))
    while True:
        try:
            data = receive.recv_bytes()
        except (EOFError, OSError):
            break  # the parent is gone: what came is written; close and end
        if not data:
            break
        try:
            child.write(_SEQ.unpack_from(data)[0], data[_SEQ.size :])
            reply = b""
        except Exception as exc:
            log.exception("writer process (%s): a batch failed", child.kind)
            reply = f"{type(exc).__name__}: {exc}".encode() or b"failed"
        with suppress(OSError):
            answer.send_bytes(reply)
    try:
        child.close()
    except Exception:
        log.exception("writer process (%s): closing failed", child.kind)
    with suppress(OSError):
        answer.send(("closed", "", ""))


def main(argv: list[str]) -> None:
    """`python -m siptrap.outputs.recorder KIND PATH RUN IN_FD OUT_FD`: a fresh
    interpreter that imports only the recording, not the whole honeypot."""
    from multiprocessing.connection import Connection

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="siptrap writer: %(levelname)s %(message)s")
    kind, path, run, in_fd, out_fd = argv
    receive = Connection(int(in_fd), writable=False)
    answer = Connection(int(out_fd), readable=False)
    serve(receive, answer, _Child(kind, Path(path), run))


# -- the parent's side --------------------------------------------------------------------
class ProcessSink:
    """The bus sink for events.jsonl or siptrap.db written by a writer process."""

    def __init__(self, kind: str, path: Path) -> None:
        if kind not in KINDS:
            raise ValueError(f"writer process kind: {kind!r}")
        self.name = kind
        self.path = Path(path)
        self._run = uuid.uuid4().hex  # tells this run's batches from an earlier run's
        self._seq = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Any = None
        self._receive: Any = None
        self._pending: tuple[subprocess.Popen[bytes], Any, Any] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def launch(self) -> None:
        """Start the writer process without waiting for it (the bus starts every writer
        first, then opens them: their interpreters start side by side)."""
        from multiprocessing.connection import Connection

        if self._pending is not None or self._send is not None:
            return
        from_parent, to_child = os.pipe()  # not inherited by anything else (PEP 446)
        from_child, to_parent = os.pipe()
        args = [sys.executable, "-m", __name__, self.name, str(self.path), self._run]
        args += [str(from_parent), str(to_parent)]
        try:
            process = subprocess.Popen(args, pass_fds=(from_parent, to_parent), stdin=DEVNULL)
        except BaseException:
            for fd in (to_child, from_child):
                os.close(fd)
            raise
        finally:
            os.close(from_parent)
            os.close(to_parent)
        send, receive = Connection(to_child, readable=False), Connection(from_child, writable=False)
        self._pending = (process, send, receive)

    def open(self) -> None:
        """Start the writer process (if `launch` did not) and wait until its file is
        open; raise as the in-process sink's open would (OSError, StoreError)."""
        self.launch()
        assert self._pending is not None
        process, send, receive = self._pending
        self._pending = None
        state, kind, message = "ended", "store", "the writer process ended while opening"
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
            raise OSError(message) if kind == "os" else StoreError(message)
        self._process, self._send, self._receive = process, send, receive

    def write(self, events: list[Event]) -> None:
        self._seq += 1
        data = _SEQ.pack(self._seq) + encode_batch(events)
        try:
            answer = self._exchange(data)
        except (EOFError, OSError):  # the child died: once more, with a new one
            self._restart()
            try:
                answer = self._exchange(data)
            except (EOFError, OSError) as exc:
                self._discard()
                raise RecordingError(f"{self.name} writer process: {exc!r}") from exc
        if answer:
            raise RecordingError(f"{self.name} writer process: {answer.decode()}")

    def _exchange(self, data: bytes) -> bytes:
        if self._send is None:
            raise EOFError("no writer process")
        self._send.send_bytes(data)
        if not self._receive.poll(BATCH_TIMEOUT):  # stuck: replaced, and the batch resent
            if self._process is not None:
                self._process.kill()
            raise TimeoutError(f"no answer in {BATCH_TIMEOUT:g} s")
        return bytes(self._receive.recv_bytes())

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
            self._process = None

    def _restart(self) -> None:
        self._discard()
        log.warning("the %s writer process is gone: starting it again", self.name)
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
                receive.recv()  # ("closed", ...): the sink is closed
        except (EOFError, OSError):
            log.warning("the %s writer process ended before its clean stop", self.name)
        finally:
            send.close()
            receive.close()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None


if __name__ == "__main__":
    main(sys.argv[1:])
