"""The `[analysis]` and `[alerts]` sections of siptrap's configuration.

Kept here, with the analysis, and listed in `siptrap.config.SECTIONS`, so `config show`
prints them with the rest. Every key has a default and a one-line description.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from .alerts import SEVERITY_ORDER


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = _doc("analyse traffic live and raise analysis.alert.raised events", True)
    rules: tuple[str, ...] = _doc(
        "rule files or directories in force; empty: the built-in rules (siptrap rules list)", ()
    )
    proxies: tuple[str, ...] = _doc(
        "the domain's proxies and PBXs (addresses or networks): INVITEs for unknown users "
        "through them are dial-plan faults, others direct attacks",
        (),
    )
    home_region: str = _doc(
        "the honeypot's country (ISO code, e.g. GB) to judge national numbers; empty: "
        "only numbers dialled with an international prefix are judged",
        "",
    )
    system_actions: bool = _doc(
        "run the commands of rules' system actions (argument lists, no shell)", False
    )
    system_timeout: float = _doc("seconds a system action may run before it is killed", 10.0)
    system_concurrency: int = _doc("system actions running at once (more wait, then drop)", 2)
    alert_idle: float = _doc("seconds without new activity before an alert is closed", 300.0)
    update_interval: float = _doc("seconds between updates of an ongoing alert", 30.0)


@dataclass(frozen=True)
class AlertsConfig:
    files: bool = _doc("write each alert as text and HTML in the data directory's alerts/", True)
    smtp_host: str = _doc("SMTP server for alert e-mail; empty: no e-mail", "")
    smtp_port: int = _doc("SMTP port", 25)
    smtp_starttls: bool = _doc("use STARTTLS on the SMTP connection", False)
    smtp_user: str = _doc("SMTP login; empty: none", "")
    smtp_password: str = _doc("SMTP password", "")
    smtp_from: str = _doc("From address of alert e-mail", "siptrap@localhost")
    smtp_to: tuple[str, ...] = _doc("recipients of alert e-mail", ())
    min_severity: str = _doc("lowest severity e-mailed: info, low, medium, high, critical", "high")
    max_emails_per_hour: int = _doc("e-mails sent per hour at most (the rest are counted)", 60)


def check_sections(analysis: AnalysisConfig, alerts: AlertsConfig) -> str | None:
    """A problem with the [analysis] or [alerts] section, or None."""
    for item in analysis.proxies:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            return f"analysis.proxies: {item!r} is not an address or a network"
    if analysis.home_region and not re.fullmatch(r"[A-Za-z]{2}", analysis.home_region):
        return "analysis.home_region: a two-letter country code, such as GB"
    if analysis.system_concurrency < 1:
        return "analysis.system_concurrency: at least 1"
    if alerts.min_severity not in SEVERITY_ORDER:
        return f"alerts.min_severity: one of {', '.join(SEVERITY_ORDER)}"
    if alerts.smtp_host and not alerts.smtp_to:
        return "alerts.smtp_to: at least one recipient when smtp_host is set"
    return None
