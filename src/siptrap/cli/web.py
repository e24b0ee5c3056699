"""`siptrap web` (the dashboard over a data directory) and `siptrap ctl` (runtime control
of a running `siptrap run` over its unix socket)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the dashboard and API (read-only) over a data directory until Ctrl-C."""
    import asyncio
    import contextlib
    import signal

    from ..web.control import socket_control
    from ..web.server import WebServer
    from ..web.settings import WebError, parse_web
    from ..web.store_metrics import store_registry

    try:
        settings = parse_web(args.listen, args.token, "--listen", "--token")
    except WebError as exc:
        print(f"siptrap web: {exc}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    actions: tuple[Any, ...] = ()
    if args.config:  # only what a lift undoes (as `siptrap blocks lift --config`)
        from ..config import load_config
        from ..settings import ConfigError

        try:
            actions = tuple(load_config(args.config, data_dir=str(data_dir)).actions)
        except ConfigError as exc:
            print(f"siptrap: configuration error: {exc}", file=sys.stderr)
            return 2

    async def serve() -> None:
        control = socket_control(data_dir)  # the honeypot running there, if one does
        server = WebServer(
            data_dir,
            settings,
            args.sensor,
            registry=store_registry(data_dir),  # /metrics counted from the store
            control=control,
            actions=actions,
        )
        await server.start()
        print(f"siptrap web: http://{settings.host}:{server.port}/ over {data_dir}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(serve())
    return 0


def _data_dir_among(words: list[str], data_dir: str) -> tuple[list[str], str]:
    """`siptrap ctl status --data-dir DIR` means what `ctl --data-dir DIR status` does
    (no ctl command has a --data-dir of its own)."""
    for i, word in enumerate(words):
        if word == "--data-dir" and i + 1 < len(words):
            return words[:i] + words[i + 2 :], words[i + 1]
        if word.startswith("--data-dir="):
            return words[:i] + words[i + 1 :], word.split("=", 1)[1]
    return words, data_dir


def cmd_ctl(args: argparse.Namespace) -> int:
    """Send one command to the running honeypot; print its answer as JSON."""
    from ..web.control import SOCKET_NAME, send_command

    words, data_dir = _data_dir_among(list(args.words), args.data_dir)
    path = Path(data_dir) / SOCKET_NAME
    if not words:
        print("siptrap ctl: a command is needed (status, stats, mode, ...)", file=sys.stderr)
        return 2
    try:
        reply: dict[str, Any] = send_command(path, words)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"siptrap ctl: no running honeypot at {path}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"siptrap ctl: {path}: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"siptrap ctl: {reply.get('error', 'no answer')}", file=sys.stderr)
        return 2
    print(json.dumps(reply.get("result"), indent=2, ensure_ascii=False))
    return 0


def add_parser(sub: Any) -> None:
    p_web = sub.add_parser("web", help="serve the dashboard and API over a data directory")
    p_web.add_argument(
        "--data-dir",
        default="./siptrap-data",
        metavar="DIR",
        help="data directory (default ./siptrap-data)",
    )
    p_web.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="ADDR:PORT",
        help="address to serve on (default 127.0.0.1:8080)",
    )
    p_web.add_argument(
        "--token",
        "--web-token",
        default=os.environ.get("SIPTRAP_WEB_TOKEN", ""),
        help="token (default $SIPTRAP_WEB_TOKEN); required off loopback",
    )
    p_web.add_argument("--sensor", default="siptrap", help="sensor name shown in the pages")
    p_web.add_argument(
        "--config", metavar="FILE", help="TOML configuration: the [[actions]] a block lift undoes"
    )
    p_web.set_defaults(func=cmd_web)

    p_ctl = sub.add_parser(
        "ctl",
        help="control a running honeypot",
        description="status | stats | mode passive|active | console verbose|quiet | "
        "email on|off | calls list|hangup ID|hangup all | extensions list|add|remove|set | "
        "personality NAME | rules reload | clean alerts|recordings|events --before DATE | "
        "blocks list|lift ADDR",
    )
    p_ctl.add_argument(
        "--data-dir",
        default="./siptrap-data",
        metavar="DIR",
        help="data directory (default ./siptrap-data)",
    )
    p_ctl.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND")
    p_ctl.set_defaults(func=cmd_ctl)
