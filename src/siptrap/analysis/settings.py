"""The `[analysis]` and `[alerts]` sections of siptrap's configuration.

Kept here, with the analysis, and listed in `siptrap.config.SECTIONS`, so `config show`
prints them with the rest. Every key has a default and a one-line description.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..settings import doc
from .alerts import SEVERITY_ORDER


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = doc("analyse traffic live and raise analysis.alert.raised events", True)
    rules: tuple[str, ...] = doc(
        "rule files or directories in force; empty: the built-in rules (siptrap rules list)", ()
    )
    proxies: tuple[str, ...] = doc(
        "the domain's proxies and PBXs (addresses or networks): INVITEs for unknown users "
        "through them are dial-plan faults, others direct attacks",
        (),
    )
    home_region: str = doc(
        "the honeypot's country (ISO code, e.g. GB) to judge national numbers; empty: "
        "only numbers dialled with an international prefix are judged",
        "",
    )
    system_actions: bool = doc(
        "run the commands of rules' system actions (argument lists, no shell)", False
    )
    system_timeout: float = doc("seconds a system action may run before it is killed", 10.0)
    system_concurrency: int = doc("system actions running at once (more wait, then drop)", 2)
    alert_idle: float = doc("seconds without new activity before an alert is closed", 300.0)
    update_interval: float = doc("seconds between updates of an ongoing alert", 30.0)


@dataclass(frozen=True)
class AlertsConfig:
    files: bool = doc("write each alert as text and HTML in the data directory's alerts/", True)
    smtp_host: str = doc("SMTP server for alert e-mail; empty: no e-mail", "")
    smtp_port: int = doc("SMTP port", 25)
    smtp_starttls: bool = doc("use STARTTLS on the SMTP connection", False)
    smtp_user: str = doc("SMTP login; empty: none", "")
    smtp_password: str = doc("SMTP password", "")
    smtp_from: str = doc("From address of alert e-mail", "siptrap@localhost")
    smtp_to: tuple[str, ...] = doc("recipients of alert e-mail", ())
    min_severity: str = doc("lowest severity e-mailed: info, low, medium, high, critical", "high")
    max_emails_per_hour: int = doc("e-mails sent per hour at most (the rest are counted)", 60)


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
