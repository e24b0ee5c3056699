"""[[outputs]] in the configuration and in the running honeypot: loading and checking
every kind, `config show`, per-output queue sizes, and isolation: a webhook whose server
never answers neither slows the honeypot's answers nor the syslog, pcap and ECS outputs
beside it, and its drops are counted."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from outputs_helpers import UdpReceiver
from siptrap.config import config_from_dict, render
from siptrap.events.bus import EventBus
from siptrap.offline.capture import read_capture
from siptrap.outputs.settings import (
    EcsOutput,
    HepOutput,
    HpfeedsOutput,
    PcapOutput,
    SyslogOutput,
    WebhookOutput,
)
from siptrap.outputs.webhook import WebhookSink
from siptrap.settings import ConfigError
from test_app import Running, make_config, options

ALL_KINDS = [
    {"kind": "syslog", "address": "tcp:[::1]:6514", "facility": "auth", "events": ["sip.auth"]},
    {"kind": "webhook", "url": "https://hooks.example.invalid/x", "format": "slack"},
    {"kind": "hep", "address": "udp:127.0.0.1:9060", "capture_id": 7, "password": "k"},
    {"kind": "hpfeeds", "ident": "trap", "secret": "s", "port": 10000},
    {"kind": "ecs", "path": "/var/log/siptrap/ecs.jsonl"},
    {"kind": "pcap", "directory": "caps", "max_files": 4, "queue_size": 500},
]


def test_every_kind_loads() -> None:
    config = config_from_dict({"outputs": ALL_KINDS})
    kinds = [type(o) for o in config.outputs]
    assert kinds == [SyslogOutput, WebhookOutput, HepOutput, HpfeedsOutput, EcsOutput, PcapOutput]
    syslog, webhook, hep, hpfeeds, ecs, pcap = config.outputs
    assert isinstance(syslog, SyslogOutput) and syslog.events == ("sip.auth",)
    assert syslog.address == "tcp:[::1]:6514" and syslog.label == "syslog"
    assert isinstance(webhook, WebhookOutput) and webhook.format == "slack"
    assert isinstance(hep, HepOutput) and hep.capture_id == 7
    assert isinstance(pcap, PcapOutput) and pcap.queue_size == 500 and pcap.max_files == 4
    assert isinstance(hpfeeds, HpfeedsOutput) and (hpfeeds.ident, hpfeeds.port) == ("trap", 10000)
    assert isinstance(ecs, EcsOutput) and ecs.path == "/var/log/siptrap/ecs.jsonl"
    assert config_from_dict({}).outputs == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "smoke"}, "outputs[0].kind: one of"),
        ({"address": "udp:1.2.3.4:514"}, "outputs[0].kind"),
        ({"kind": "syslog", "colour": "red"}, "unknown key 'colour'"),
        ({"kind": "syslog", "address": "udp:host"}, "expected udp:HOST:PORT"),
        ({"kind": "syslog", "address": "file:/x"}, "expected udp:"),
        ({"kind": "syslog", "facility": "local9"}, "facility: one of"),
        ({"kind": "syslog", "queue_size": 0}, "queue_size: at least 1"),
        ({"kind": "webhook"}, "url: an http:// or https:// URL"),
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "url: an http"),
        ({"kind": "webhook", "url": "http://x/", "format": "teams"}, "format: json or slack"),
        ({"kind": "webhook", "url": "http://x/", "retries": "3"}, "a whole number"),
        ({"kind": "hep"}, "expected udp:"),
        ({"kind": "hpfeeds"}, "ident, channel and port"),
        ({"kind": "pcap", "file_bytes": 10}, "file_bytes >= 65536"),
        ({"kind": "ecs", "events": "sip"}, "a list of strings"),
    ],
)
def test_bad_entries_are_refused(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"outputs": [entry]})


def test_two_outputs_of_a_kind_need_names() -> None:
    entry = {"kind": "ecs"}
    with pytest.raises(ConfigError, match="different names"):
        config_from_dict({"outputs": [entry, entry]})
    config = config_from_dict({"outputs": [entry, {**entry, "name": "ecs2", "path": "b.jsonl"}]})
    assert [o.label for o in config.outputs] == ["ecs", "ecs2"]


def test_config_show_renders_outputs_that_load_again() -> None:
    config = config_from_dict({"outputs": ALL_KINDS})
    text = render(config)
    assert text.count("\n[[outputs]]\n") == 6
    again = config_from_dict(tomllib.loads(text))
    assert again.outputs == config.outputs


def test_bus_sizes_each_queue_from_the_output() -> None:
    sink = WebhookSink(WebhookOutput(url="http://127.0.0.1:9/", queue_size=3))
    bus = EventBus([sink], maxsize=1000)
    (runner,) = bus.runners
    assert runner.maxsize == 3


class BlackHole:
    """A TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_a_stuck_output_slows_neither_the_honeypot_nor_the_others(tmp_path: Path) -> None:
    hole = BlackHole()
    syslog = UdpReceiver()
    outputs = [
        {
            "kind": "webhook",
            "url": f"http://127.0.0.1:{hole.port}/hook",
            "events": ["sip"],
            "timeout": 3.0,
            "retries": 0,
            "queue_size": 5,
        },
        {"kind": "syslog", "address": f"udp:127.0.0.1:{syslog.port}", "events": ["sip.request"]},
        {"kind": "pcap"},
        {"kind": "ecs", "events": ["sip.request", "sip.response"]},
    ]
    config = make_config(tmp_path, ["udp:127.0.0.1:0"], outputs=outputs)
    running = Running(config).start()
    count = 30
    try:
        port = running.port("udp")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        with client:
            for i in range(count):
                client.sendto(options(f"iso{i}", port=client.getsockname()[1]), ("127.0.0.1", port))
            answers = [client.recv(65536) for _ in range(count)]
        assert all(a.startswith(b"SIP/2.0 200") for a in answers)
        lines = syslog.receive(count)  # all of them, while the webhook is stuck
        assert all(b"event=sip.request.received" in line for line in lines)
        deadline = time.monotonic() + 10
        while not hole.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hole.accepted, "the webhook connected and is waiting on its first POST"
    finally:
        running.stop()
        syslog.close()
        hole.close()
    assert running.honeypot is not None
    runners = {r.sink.name: r for r in running.honeypot.bus.runners}
    webhook = runners["webhook"]
    assert webhook.maxsize == 5 and webhook.dropped > 0
    sink = webhook.sink
    assert isinstance(sink, WebhookSink) and sink.sent == 0 and sink.dropped > 0
    assert runners["syslog"].dropped == 0 and runners["pcap"].dropped == 0
    (capture,) = (tmp_path / "pcap").iterdir()
    messages = [d.payload for d in read_capture(capture)]
    assert sum(m.startswith(b"OPTIONS ") for m in messages) == count
    assert sum(m.startswith(b"SIP/2.0 200") for m in messages) == count
    ecs = [json.loads(line) for line in (tmp_path / "ecs.jsonl").read_text().splitlines()]
    assert sum(d["event"]["action"] == "sip.request.received" for d in ecs) == count
    assert {d["sip"]["method"] for d in ecs if "method" in d.get("sip", {})} == {"OPTIONS"}


def test_clean_stop_is_bounded_with_a_dead_webhook(tmp_path: Path) -> None:
    """The queue of an output whose server is gone drains at once (dropped, counted)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    outputs = [{"kind": "webhook", "url": f"http://127.0.0.1:{dead}/", "events": ["sip"]}]
    config = make_config(tmp_path, ["udp:127.0.0.1:0"], outputs=outputs)
    running = Running(config).start()
    try:
        port = running.port("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            for i in range(20):
                client.sendto(options(f"d{i}", port=client.getsockname()[1]), ("127.0.0.1", port))
        running.wait_for(lambda e: e.id == "sip.response.sent" and e.fields["call_id"] == "d19")
    finally:
        started = time.monotonic()
        running.stop()
    assert running.honeypot is not None
    (sink,) = running.honeypot.outputs
    assert isinstance(sink, WebhookSink)
    assert sink.sent == 0 and sink.dropped >= 40  # 20 requests in, 20 answers out
    assert time.monotonic() - started < 25  # the retries' backoff, not a wait per event


def test_output_drops_are_in_sensor_stats_and_on_metrics(tmp_path: Path) -> None:
    """What an output dropped (here: its receiver is gone) is counted by its name in
    `sensor.stats` while the honeypot runs, and as siptrap_output_dropped_total."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from siptrap.outputs.plugin import dropped_counts
    from siptrap.web.metrics import OutputDrops

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    outputs = [
        {"kind": "webhook", "url": f"http://127.0.0.1:{dead}/", "events": ["sip"], "retries": 0},
        {"kind": "ecs", "events": ["sip.request"]},
    ]
    console = {"enabled": False, "summary_interval": 0.2}
    config = make_config(tmp_path, ["udp:127.0.0.1:0"], outputs=outputs, console=console)
    running = Running(config).start()
    try:
        port = running.port("udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            for i in range(10):
                client.sendto(options(f"o{i}", port=client.getsockname()[1]), ("127.0.0.1", port))
        stats = running.wait_for(
            lambda e: e.id == "sensor.stats" and e.fields["output_dropped"].get("webhook", 0) > 0
        )
    finally:
        running.stop()
    assert stats, "a sensor.stats counted the webhook's drops"
    assert stats[0].fields["output_dropped"]["ecs"] == 0
    honeypot = running.honeypot
    assert honeypot is not None
    counts = dropped_counts(honeypot.outputs, honeypot.bus.runners)
    webhook = next(r for r in honeypot.bus.runners if r.sink.name == "webhook")
    assert counts == {"webhook": webhook.dropped + webhook.sink.dropped, "ecs": 0}  # type: ignore[attr-defined]
    assert counts["webhook"] >= 20  # 10 requests in, 10 answers out
    registry = CollectorRegistry()
    registry.register(OutputDrops(lambda: counts))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("siptrap_output_dropped_total", (("output", "webhook"),))] == counts["webhook"]
    assert samples[("siptrap_output_dropped_total", (("output", "ecs"),))] == 0
