"""Joining the web server to a running honeypot: its metrics and its control commands.

app.py calls these two; they read the honeypot (app.Honeypot) only through the attributes
named here, at scrape or request time, on the event loop.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from ..outputs.plugin import dropped_counts
from .control import active_calls
from .metrics import LiveGauges, MetricsSink, OutputDrops
from .server import WebServer
from .settings import WebSettings


def metrics_sink(honeypot: Any) -> tuple[CollectorRegistry, MetricsSink]:
    """A registry with the event counters (a bus sink) and the live gauges."""
    registry = CollectorRegistry()
    sink = MetricsSink(registry)

    def runners() -> list[Any]:
        return list(honeypot.bus.runners)

    def live_calls() -> int:
        return len(active_calls(honeypot.endpoint))

    registry.register(
        LiveGauges(
            {
                "siptrap_queue_depth": (
                    "events waiting in each sink's queue",
                    lambda: {r.sink.name: len(r._items) for r in runners()},
                ),
                "siptrap_queue_dropped": (
                    "events each sink's full queue dropped",
                    lambda: {r.sink.name: r.dropped for r in runners()},
                ),
                "siptrap_active_calls": ("calls ringing or answered now", live_calls),
                "siptrap_media_calls": (
                    "answered calls with media now",
                    lambda: honeypot.media.active,
                ),
                "siptrap_recording_bytes": (
                    "bytes of recordings on disk (pcap and WAV)",
                    lambda: honeypot.media.budget.used,
                ),
                "siptrap_sources_tracked": (
                    "source addresses the flood guard tracks",
                    lambda: len(honeypot.endpoint.guard),
                ),
                "siptrap_guard_shed": (
                    "requests shed since start (rate, reflection, pressure, at the door)",
                    lambda: honeypot.endpoint.guard.shed,
                ),
                "siptrap_mode_active": (
                    "1 in active mode, 0 in passive",
                    lambda: 1 if honeypot.mode == "active" else 0,
                ),
            }
        )
    )
    registry.register(OutputDrops(lambda: dropped_counts(honeypot.outputs, runners())))
    return registry, sink


async def start_web(honeypot: Any, settings: WebSettings) -> WebServer:
    async def control(command: list[str], who: str) -> dict[str, Any]:
        result: dict[str, Any] = await honeypot.controller.run_async(command, who)
        return result

    server = WebServer(
        honeypot.data_dir,
        settings,
        honeypot.config.sensor.name,
        registry=honeypot.registry,
        control=control,
        actions=tuple(honeypot.config.actions),
    )
    await server.start()
    honeypot._emit(
        "sensor.web.started",
        None,
        {"listen": f"{settings.host}:{server.port}", "read_only": not settings.token},
    )
    return server
