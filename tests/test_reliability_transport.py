"""Issue 8 on real loopback sockets: every byte a TCP or TLS connection sends is recorded
(unfinished messages, oversized ones, garbage, what the TLS port gets that is not TLS),
slow clients cannot hold the door shut, and stored malformed input is capped per
connection and per source."""

from __future__ import annotations

import socket
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siptrap.events.record import Event
from test_app import Running, make_config, options, read_messages

LOOPBACK = "127.0.0.1"


def serve(tmp_path: Path, listen: list[str], **sections: Any) -> Running:
    sections.setdefault("recording", {"sqlite": False})
    return Running(make_config(tmp_path / "data", listen, **sections)).start()


@pytest.fixture
def tcp(tmp_path: Path) -> Iterator[Running]:
    running = serve(
        tmp_path,
        ["tcp:127.0.0.1:0"],
        transport={"message_timeout": 1.0, "max_message_size": 4000},
        flood={"idle_timeout": 30.0},
    )
    try:
        yield running
    finally:
        running.stop()


def connection_closed(running: Running, src_port: int, timeout: float = 10.0) -> Event:
    found = running.wait_for(
        lambda e: (
            e.id == "transport.connection.closed"
            and e.peer is not None
            and e.peer.src_port == src_port
        ),
        timeout,
    )
    assert found, f"no transport.connection.closed for port {src_port}"
    return found[0]


def malformed_from(running: Running, src_port: int) -> list[Event]:
    return [
        e
        for e in list(running.events)
        if e.id == "sip.message.malformed" and e.peer is not None and e.peer.src_port == src_port
    ]


def send_and_close(port: int, data: bytes) -> int:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        src_port = sock.getsockname()[1]
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        while sock.recv(65536):  # until the honeypot closes too
            pass
    return src_port


INVITE_HEAD = (
    b"INVITE sip:100@honeypot SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-unfinished\r\n"
    b"From: <sip:a@example.invalid>;tag=1\r\nTo: <sip:100@honeypot>\r\n"
    b"Call-ID: unfinished-1\r\nCSeq: 1 INVITE\r\n"
)


# -- 1. everything that arrives is recorded ----------------------------------------------------
@pytest.mark.parametrize(
    ("data", "defect", "error"),
    [
        (
            INVITE_HEAD + b"Content-Length: 200\r\n\r\nv=0\r\no=short body",
            "content_length_too_large",
            None,
        ),
        (INVITE_HEAD + b"Content-Length: 0\r\n", "no_header_end", None),
        (b"\x16\x03garbage with no newline at all \xff\x00", None, "no SIP start line"),
    ],
    ids=["shorter-than-content-length", "no-empty-line", "garbage-without-newline"],
)
def test_bytes_held_at_close_are_stored_with_their_defects(
    tcp: Running, data: bytes, defect: str | None, error: str | None
) -> None:
    src_port = send_and_close(tcp.port("tcp"), data)
    closed = connection_closed(tcp, src_port)
    assert closed.fields["messages"] == 0
    assert closed.fields["malformed_bytes"] == len(data)
    assert closed.fields["discarded_bytes"] == 0
    (stored,) = malformed_from(tcp, src_port)
    assert stored.raw == data  # byte for byte
    assert stored.fields["size"] == len(data)
    if defect is not None:
        assert defect in stored.fields["defects"]
        assert stored.fields["method"] == "INVITE"
        assert "unfinished message" in stored.fields["error"]
    else:
        assert error in stored.fields["error"] and stored.fields["defects"] == []


def test_an_unfinished_message_is_stored_when_its_deadline_passes(tcp: Running) -> None:
    data = INVITE_HEAD + b"Content-Length: 50\r\n\r\nonly part"
    with socket.create_connection((LOOPBACK, tcp.port("tcp")), timeout=5) as sock:
        src_port = sock.getsockname()[1]
        sock.sendall(data)
        sock.settimeout(10)
        assert sock.recv(65536) == b""  # the honeypot closes it (message_timeout 1 s)
    closed = connection_closed(tcp, src_port)
    assert closed.fields["reason"] == "message_timeout"
    (stored,) = malformed_from(tcp, src_port)
    assert stored.raw == data and "content_length_too_large" in stored.fields["defects"]


def test_a_message_over_the_cap_is_stored_up_to_it_and_the_rest_counted(tcp: Running) -> None:
    body = b"x" * 6000
    big = INVITE_HEAD + b"Content-Length: 6000\r\n\r\n" + body
    after = options("after-the-big-one", "TCP")
    with socket.create_connection((LOOPBACK, tcp.port("tcp")), timeout=5) as sock:
        src_port = sock.getsockname()[1]
        sock.sendall(big + after)
        (reply,) = read_messages(sock, 1)  # the stream stays in step after the cut
    assert reply.call_id == "after-the-big-one"
    closed = connection_closed(tcp, src_port)
    (stored,) = malformed_from(tcp, src_port)
    assert stored.raw == big[:4000]
    assert "message_too_large" in stored.fields["defects"]
    assert closed.fields["discarded_bytes"] == len(big) - 4000
    assert closed.fields["messages"] == 2


def test_the_empty_line_of_a_request_that_is_not_sip_is_kept(tcp: Running) -> None:
    http = b"GET / HTTP/1.1\r\nHost: honeypot\r\nUser-Agent: curl\r\n\r\n"
    src_port = send_and_close(tcp.port("tcp"), http)
    connection_closed(tcp, src_port)
    stored = malformed_from(tcp, src_port)
    assert b"".join(e.raw or b"" for e in stored) == http


def test_garbage_lines_by_the_thousand_do_not_break_the_connection(tcp: Running) -> None:
    lines = b"a\n" * 40_000  # once a RecursionError in the framer
    after = options("after-lines", "TCP")
    with socket.create_connection((LOOPBACK, tcp.port("tcp")), timeout=5) as sock:
        src_port = sock.getsockname()[1]
        sock.sendall(lines + after)
        (reply,) = read_messages(sock, 1)
    assert reply.status == 200
    connection_closed(tcp, src_port)
    assert b"".join(e.raw or b"" for e in malformed_from(tcp, src_port)) == lines


def test_unfinished_input_reaches_sqlite_byte_for_byte(tmp_path: Path) -> None:
    running = serve(tmp_path, ["tcp:127.0.0.1:0"], recording={"sqlite": True})
    data = INVITE_HEAD + b"Content-Length: 99\r\n\r\ntruncated"
    try:
        src_port = send_and_close(running.port("tcp"), data)
        connection_closed(running, src_port)
    finally:
        running.stop()
    with sqlite3.connect(tmp_path / "data" / "siptrap.db") as db:
        rows = db.execute(
            "select raw, malformed, defects from messages where src_port = ?", (src_port,)
        ).fetchall()
    assert [(bytes(r[0]), r[1]) for r in rows] == [(data, 1)]
    assert "content_length_too_large" in rows[0][2]


# -- 2. the TLS port records what it sees ------------------------------------------------------
@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Running]:
    running = serve(
        tmp_path,
        ["tls:127.0.0.1:0"],
        transport={"message_timeout": 1.0, "max_connections_per_source": 2},
    )
    try:
        yield running
    finally:
        running.stop()


def tls_failed(running: Running, src_port: int) -> Event:
    found = running.wait_for(
        lambda e: (
            e.id == "transport.tls.failed" and e.peer is not None and e.peer.src_port == src_port
        ),
        10.0,
    )
    assert found, "no transport.tls.failed"
    return found[0]


@pytest.mark.parametrize(
    "data",
    [options("plain-on-tls", "TLS"), b"\x00\x01\x02 garbage \xff\xfe\r\n\r\nmore"],
    ids=["plain-sip", "garbage"],
)
def test_what_is_not_tls_on_the_tls_port_is_recorded(tls: Running, data: bytes) -> None:
    src_port = send_and_close(tls.port("tls"), data)
    failed = tls_failed(tls, src_port)
    assert failed.fields["size"] == len(data) and failed.fields["reason"]
    (stored,) = malformed_from(tls, src_port)
    assert stored.raw == data
    assert failed.fields["message_id"] == stored.fields["message_id"]
    assert "not a TLS handshake" in stored.fields["error"]
    closed = connection_closed(tls, src_port)
    assert closed.fields["reason"] == "tls_failed" and closed.fields["bytes_in"] == len(data)


def test_a_client_that_never_says_hello_is_closed_recorded_and_counted(tls: Running) -> None:
    port = tls.port("tls")
    silent = [socket.create_connection((LOOPBACK, port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted and in the table
        with socket.create_connection((LOOPBACK, port), timeout=5) as third:
            third.settimeout(5)
            assert third.recv(100) == b""  # refused: the source holds its 2 connections
            third_port = third.getsockname()[1]
        refused = tls.wait_for(
            lambda e: (
                e.id == "transport.connection.refused"
                and e.peer is not None
                and e.peer.src_port == third_port
            )
        )
        assert refused and refused[0].fields["reason"] == "source_limit"
        assert refused[0].fields["limit"] == 2
        for sock in silent:
            sock.settimeout(10)
            assert sock.recv(100) == b""  # closed by the handshake deadline
        for sock in silent:
            failed = tls_failed(tls, sock.getsockname()[1])
            assert failed.fields["size"] == 0 and "no TLS handshake" in failed.fields["reason"]
            assert failed.fields["message_id"] is None
    finally:
        for sock in silent:
            sock.close()
    # And a real TLS client is served afterwards.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5)) as client:
        client.sendall(options("tls-after", "TLS"))
        (reply,) = read_messages(client, 1)
    assert reply.status == 200 and reply.call_id == "tls-after"
    opened = tls.wait_for(
        lambda e: e.id == "transport.connection.opened" and e.fields.get("tls_version")
    )
    assert opened


# -- 3. slow clients cannot hold the door shut -------------------------------------------------
def test_slowloris_is_shed_and_a_fresh_client_is_served(tmp_path: Path) -> None:
    running = serve(
        tmp_path,
        ["tcp:127.0.0.1:0"],
        transport={"message_timeout": 30.0},
        flood={"idle_timeout": 30.0, "max_connections": 3},
        console={"enabled": False, "summary_interval": 0.2},
    )
    port = running.port("tcp")
    request = options("slow", "TCP")
    slow = [socket.create_connection((LOOPBACK, port), timeout=5) for _ in range(3)]
    try:
        for i in range(3):  # 1 byte a second-ish, never a whole message
            for sock in slow:
                sock.sendall(request[i : i + 1])
            time.sleep(0.3)
        with socket.create_connection((LOOPBACK, port), timeout=5) as fresh:
            fresh.sendall(options("fresh", "TCP"))
            (reply,) = read_messages(fresh, 1)
        assert reply.status == 200 and reply.call_id == "fresh"
        shed = running.wait_for(
            lambda e: e.id == "transport.connection.refused" and e.fields["reason"] == "shed"
        )
        assert len(shed) == 1 and shed[0].fields["limit"] == 3
        slow_ports = {s.getsockname()[1] for s in slow}
        assert shed[0].peer is not None and shed[0].peer.src_port in slow_ports
        closed = connection_closed(running, shed[0].peer.src_port)
        assert closed.fields["reason"] == "shed"
        (kept,) = malformed_from(running, shed[0].peer.src_port)
        assert kept.raw == request[:3]  # what the shed connection had sent is stored
        stats = running.wait_for(
            lambda e: e.id == "sensor.stats" and e.fields["connections_shed"] >= 1
        )
        assert stats and stats[0].fields["connections_refused"] == 0
    finally:
        for sock in slow:
            sock.close()
        running.stop()


def test_a_connection_flood_from_one_source_is_refused_and_reported_sparingly(
    tmp_path: Path,
) -> None:
    running = serve(tmp_path, ["tcp:127.0.0.1:0"], transport={"max_connections_per_source": 1})
    port = running.port("tcp")
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as held:
            held.sendall(options("held", "TCP"))
            (reply,) = read_messages(held, 1)
            assert reply.status == 200
            began = time.monotonic()
            for _ in range(50):
                with socket.create_connection((LOOPBACK, port), timeout=5) as extra:
                    extra.settimeout(5)
                    assert extra.recv(100) == b""  # refused: closed at once
            elapsed = time.monotonic() - began
        assert running.honeypot is not None
        assert running.honeypot.transport_counters.refused == 50
        assert running.wait_for(lambda e: e.id == "transport.connection.refused")
        time.sleep(0.3)  # the sinks are written in batches
        refused = running.of("transport.connection.refused")
        assert 1 <= len(refused) <= elapsed + 2  # one a second at most, the rest counted
        assert all(e.fields["reason"] == "source_limit" for e in refused)
        assert len(refused) + sum(e.fields["unreported"] for e in refused) <= 50
    finally:
        running.stop()


def test_a_whole_message_deadline_not_reset_by_each_byte(tmp_path: Path) -> None:
    running = serve(
        tmp_path,
        ["tcp:127.0.0.1:0"],
        transport={"message_timeout": 1.0},
        flood={"idle_timeout": 30.0},
    )
    request = options("trickle", "TCP")
    try:
        with socket.create_connection((LOOPBACK, running.port("tcp")), timeout=5) as sock:
            src_port = sock.getsockname()[1]
            sent = 0
            deadline = time.monotonic() + 20
            try:
                while sent < len(request) and time.monotonic() < deadline:
                    sock.sendall(request[sent : sent + 1])  # each byte well inside idle_timeout
                    sent += 1
                    time.sleep(0.25)
            except OSError:
                pass  # the honeypot closed it: what the test wants
        closed = connection_closed(running, src_port)
        assert closed.fields["reason"] == "message_timeout"
        assert closed.fields["messages"] == 0
        assert sent < len(request)  # closed before the trickle could finish
    finally:
        running.stop()


# -- 4. disk is bounded per source -------------------------------------------------------------
def test_ten_megabytes_of_garbage_store_no_more_than_the_caps(tmp_path: Path) -> None:
    per_conn, per_source = 256 * 1024, 384 * 1024
    running = serve(
        tmp_path,
        ["tcp:127.0.0.1:0", "udp:127.0.0.1:0"],
        transport={"max_stored_per_connection": per_conn, "max_stored_per_source": per_source},
        recording={"sqlite": True},
    )
    garbage = (b"\x00\xffNOT SIP AT ALL " * 64 + b"\n") * 10_000  # ~10 MB, with newlines
    try:
        ports = [send_and_close(running.port("tcp"), garbage) for _ in range(2)]
        closed = [connection_closed(running, p, 30.0) for p in ports]
        assert running.honeypot is not None
        counters = running.honeypot.transport_counters
        before = counters.unstored_bytes
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(50):  # the same source's budget: UDP garbage is not stored either
                udp.sendto(b"\x01" * 1000, (LOOPBACK, running.port("udp")))
            udp.sendto(options("udp-still-answered"), (LOOPBACK, running.port("udp")))
            udp.settimeout(5)
            assert b"udp-still-answered" in udp.recv(65536)
    finally:
        running.stop()
    udp_stored = sum(
        e.fields["size"]
        for e in running.of("sip.message.malformed")
        if e.peer is not None and e.peer.transport == "udp"
    )
    unstored = counters.unstored_bytes - before
    assert unstored > 0 and unstored + udp_stored == 50 * 1000  # each counted or stored
    first, second = closed
    assert first.fields["malformed_bytes"] <= per_conn
    assert first.fields["malformed_bytes"] + first.fields["discarded_bytes"] == len(garbage)
    tcp_stored = first.fields["malformed_bytes"] + second.fields["malformed_bytes"]
    assert tcp_stored + udp_stored <= per_source
    scopes = {e.fields["scope"] for e in running.of("transport.storage.capped")}
    assert scopes == {"connection", "source"}
    with sqlite3.connect(tmp_path / "data" / "siptrap.db") as db:
        (stored,) = db.execute(
            "select coalesce(sum(length(raw)), 0) from messages where malformed = 1"
        ).fetchone()
    assert 0 < stored <= per_source
    (stopped,) = running.of("sensor.stopped")
    assert stopped is not None


def test_the_caps_are_in_config_show(tmp_path: Path) -> None:
    from siptrap.config import render

    text = render(make_config(tmp_path, ["udp:127.0.0.1:0"]))
    section = text.split("[transport]", 1)[1].split("\n[", 1)[0]
    for key in (
        "max_connections_per_source",
        "message_timeout",
        "max_message_size",
        "max_stored_per_connection",
        "max_stored_per_source",
        "stored_window",
    ):
        assert f"\n{key} = " in section, key
