"""siptrap's one typed configuration: defaults, TOML loading, validation, `config show`.

Loaded once at start and passed down; nothing reads a global. Every key has a default
and a one-line description (field metadata), which `siptrap config show` prints as a
commented TOML file a user can start from.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .actions.settings import (
    ActionConfigError,
    ActionSpec,
    PolicyConfig,
    action_specs,
    check_policy,
)
from .analysis.engine import EngineSettings
from .analysis.live import rules_in_force
from .analysis.modes import Mode, ModeError
from .analysis.rules import RuleError
from .analysis.settings import AlertsConfig, AnalysisConfig, check_sections
from .endpoint.extensions import (
    BEHAVIOURS,
    MAX_EXTENSIONS,
    MEDIA_MODES,
    Extension,
    expand_users,
)
from .endpoint.personality import BUILTIN, Personality, personality_from_config
from .endpoint.settings import EndpointSettings, FloodConfig
from .fleet.settings import NatsConfig
from .media.settings import MediaConfig
from .outputs.settings import KINDS, OutputBase, check_output
from .recon.settings import ReconConfig, check_recon
from .settings import ConfigError, doc
from .store.settings import StoreConfig
from .transport.settings import TransportConfig
from .upstream.settings import UpstreamConfig, UpstreamConfigError, upstream_configs

DEFAULT_LISTEN = (
    "udp:0.0.0.0:5060",
    "tcp:0.0.0.0:5060",
    "tls:0.0.0.0:5061",
    "udp:[::]:5060",
    "tcp:[::]:5060",
    "tls:[::]:5061",
)
TRANSPORTS = ("udp", "tcp", "tls")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Listen:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen(spec: str) -> list[Listen]:
    """`udp:ADDR:PORT`, `tcp:…`, `tls:…`, or `ADDR:PORT` (UDP and TCP); IPv6 as `[::1]:5070`."""
    spec = spec.strip()
    transport, sep, rest = spec.partition(":")
    if sep and transport.lower() in TRANSPORTS:
        transports: tuple[str, ...] = (transport.lower(),)
    else:
        transports, rest = ("udp", "tcp"), spec
    if rest.startswith("["):
        end = rest.find("]")
        host, portpart = rest[1:end], rest[end + 1 :]
        if end == -1 or not host or not portpart.startswith(":"):
            raise ConfigError(f"listen {spec!r}: write IPv6 as [ADDR]:PORT")
        port_text = portpart[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host or ":" in host:
            raise ConfigError(f"listen {spec!r}: expected [udp:|tcp:|tls:]ADDR:PORT")
    # Port 0: any free port (the one opened is reported in sensor.started).
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(f"listen {spec!r}: bad port {port_text!r}")
    return [Listen(t, host, int(port_text)) for t in transports]


@dataclass(frozen=True)
class SensorConfig:
    name: str = doc("sensor name written into every event", "siptrap")
    personality: str = doc(
        "how siptrap speaks: asterisk, freepbx, cisco, yealink, polycom or a [personalities.X]",
        "asterisk",
    )
    data_dir: str = doc(
        "where events.jsonl, siptrap.db and the TLS certificate live", "./siptrap-data"
    )
    listen: tuple[str, ...] = doc(
        "sockets: udp:ADDR:PORT, tcp:ADDR:PORT, tls:ADDR:PORT, or ADDR:PORT (UDP and TCP)",
        DEFAULT_LISTEN,
    )
    public_address: str = doc(
        "address written into Contact and SDP; empty: the address the request arrived on", ""
    )
    mode: str = doc(
        "passive (sends nothing but replies), active (recon of attack sources) or a mode a "
        "rule file declares (type = Mode) or recon.modes gives",
        "passive",
    )


@dataclass(frozen=True)
class TlsConfig:
    cert: str = doc("PEM certificate for TLS; empty: one generated into the data directory", "")
    key: str = doc("PEM private key for the certificate", "")
    common_name: str = doc("common name of the generated certificate", "pbx.local")


@dataclass(frozen=True)
class CredentialsConfig:
    recover: bool = doc("try to recover the password behind every digest response", True)
    max_candidates: int = doc("passwords tried per digest response", 2000)
    queue_size: int = doc("digest responses waiting for recovery (more are not tried)", 10000)


@dataclass(frozen=True)
class RecordingConfig:
    jsonl: bool = doc("write events.jsonl", True)
    sqlite: bool = doc("write siptrap.db (SQLite, WAL)", True)
    queue_size: int = doc("events waiting to be written (more are counted as dropped)", 200000)
    flush_interval: float = doc(
        "seconds an event may wait before it is written; a kill -9 loses at most these", 0.2
    )
    writer: str = doc(
        "who writes events.jsonl and siptrap.db: process (a writer process each, off the"
        " network path's core) or thread (sink threads in the honeypot's process)",
        "process",
    )


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = doc("print one line per notable event", True)
    summary_interval: float = doc("seconds between summary lines; 0 = none", 60.0)


DEFAULT_EXTENSIONS: tuple[dict[str, Any], ...] = (
    {"users": "100-109", "password": "1234", "behaviour": "answer", "answer_after": 3},
    {"users": "200-209", "password": "secret", "behaviour": "ring"},
    {"users": "300", "behaviour": "busy"},
)


@dataclass(frozen=True)
class Config:
    sensor: SensorConfig = field(default_factory=SensorConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    flood: FloodConfig = field(default_factory=FloodConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    nats: NatsConfig = field(default_factory=NatsConfig)
    extensions: tuple[dict[str, Any], ...] = DEFAULT_EXTENSIONS
    personalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: tuple[OutputBase, ...] = ()
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    actions: tuple[ActionSpec, ...] = ()
    upstream: tuple[UpstreamConfig, ...] = ()
    # Resolved once, when the configuration is made: the extension plan, and every
    # personality the configuration defines (the built-ins and its own).
    plan: tuple[Extension, ...] = field(init=False, repr=False, compare=False)
    resolved: dict[str, Personality] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", tuple(build_extensions(self.extensions)))
        own = {n: personality_from_config(n, v) for n, v in self.personalities.items()}
        object.__setattr__(self, "resolved", {**BUILTIN, **own})

    def listen(self) -> list[Listen]:
        return [item for spec in self.sensor.listen for item in parse_listen(spec)]

    def personality(self) -> Personality:
        """The personality `[sensor] personality` names (ConfigError if none is)."""
        return self.personality_named(self.sensor.personality)

    def personality_named(self, name: str) -> Personality:
        found = self.resolved.get(name)
        if found is None:
            raise ConfigError(f"sensor.personality: unknown personality {name!r}")
        return found

    def engine_settings(self) -> EngineSettings:
        """What the analysis engine knows of the honeypot: its extensions and proxies."""
        a = self.analysis
        return EngineSettings(
            extensions=frozenset(e.user for e in self.plan),
            proxies=tuple(a.proxies),
            home_region=a.home_region,
            alert_idle=a.alert_idle,
            update_interval=a.update_interval,
        )

    def endpoint_settings(self) -> EndpointSettings:
        """What the endpoint answers with, personality and extension plan resolved once."""
        return EndpointSettings(
            personality=self.personality(),
            extensions=self.plan,
            sensor=self.sensor.name,
            public_address=self.sensor.public_address,
            flood=self.flood,
            proxies=tuple(self.analysis.proxies),
        )

    @property
    def data_path(self) -> Path:
        return Path(self.sensor.data_dir)


EXTENSION_KEYS = {
    "users",
    "password",
    "behaviour",
    "answer_after",
    "ring_timeout",
    "redirect_to",
    "call_duration",
    "media",
    "media_file",
}


def build_extensions(entries: tuple[dict[str, Any], ...]) -> list[Extension]:
    out: dict[str, Extension] = {}
    for i, entry in enumerate(entries):
        where = f"extensions[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: a table ([[extensions]])")
        unknown = set(entry) - EXTENSION_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if "users" not in entry:
            raise ConfigError(f"{where}: 'users' is required")
        behaviour = str(entry.get("behaviour", "ring"))
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"{where}.behaviour: one of {', '.join(BEHAVIOURS)}")
        media = str(entry.get("media", "play"))
        if media not in MEDIA_MODES:
            raise ConfigError(f"{where}.media: one of {', '.join(MEDIA_MODES)}")
        if behaviour == "redirect" and not entry.get("redirect_to"):
            raise ConfigError(f"{where}: behaviour 'redirect' needs 'redirect_to'")
        password = entry.get("password")
        users = expand_users(str(entry["users"]))
        if len(out) + len(users) > MAX_EXTENSIONS:
            raise ConfigError(f"{where}: more than {MAX_EXTENSIONS} extensions in all")
        for user in users:
            out[user] = Extension(
                user=user,
                password=str(password) if password is not None else None,
                behaviour=behaviour,
                answer_after=_number(entry, "answer_after", 0.0, where),
                ring_timeout=_number(entry, "ring_timeout", 60.0, where),
                redirect_to=entry.get("redirect_to"),
                call_duration=_number(entry, "call_duration", 30.0, where),
                media=media,
                media_file=entry.get("media_file"),
            )
    return list(out.values())


def _number(entry: dict[str, Any], key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{key}: a non-negative number")
    return float(value)


SECTIONS = {
    "sensor": SensorConfig,
    "tls": TlsConfig,
    "flood": FloodConfig,
    "transport": TransportConfig,
    "credentials": CredentialsConfig,
    "recording": RecordingConfig,
    "console": ConsoleConfig,
    "media": MediaConfig,
    "analysis": AnalysisConfig,
    "alerts": AlertsConfig,
    "recon": ReconConfig,
    "policy": PolicyConfig,
    "store": StoreConfig,
    "nats": NatsConfig,
}


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file, then command-line overrides (sensor keys)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return config_from_dict(data, **overrides)


def config_from_dict(data: dict[str, Any], **overrides: Any) -> Config:
    lists = {"extensions", "personalities", "outputs", "actions", "upstream"}
    unknown = set(data) - set(SECTIONS) - lists
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]")
    sections = {name: _section(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}
    sensor_over = {k: v for k, v in overrides.items() if v is not None}
    if sensor_over:
        sections["sensor"] = replace(sections["sensor"], **sensor_over)
    extensions = data.get("extensions", DEFAULT_EXTENSIONS)
    if not isinstance(extensions, list | tuple):
        raise ConfigError("extensions: a list of tables ([[extensions]])")
    personalities = data.get("personalities", {})
    if not isinstance(personalities, dict) or not all(
        isinstance(v, dict) for v in personalities.values()
    ):
        raise ConfigError("personalities: tables ([personalities.NAME])")
    config = Config(
        extensions=tuple(extensions),
        personalities=dict(personalities),
        outputs=load_outputs(data.get("outputs", [])),
        actions=_actions(data.get("actions", [])),
        **sections,
    )
    config.listen()
    config.personality()
    known = {ext.user for ext in config.plan}
    if "upstream" in data:
        try:
            config = replace(config, upstream=upstream_configs(data["upstream"], known))
        except UpstreamConfigError as exc:
            raise ConfigError(str(exc)) from None
    try:
        check_policy(config.policy)
    except ActionConfigError as exc:
        raise ConfigError(str(exc)) from None
    problem = (
        check_sections(config.analysis, config.alerts)
        or _check_fleet(config)
        or _check_recording(config.recording)
    )
    if problem is not None:
        raise ConfigError(problem)
    problem = check_recon(config.recon, config.sensor.mode, lambda: _rule_modes(config))
    if problem is not None:
        raise ConfigError(problem)
    return config


def _rule_modes(config: Config) -> tuple[Mode, ...]:
    """The modes the configured rule files (or the built-in ones) declare."""
    try:
        return rules_in_force(config.analysis.rules).modes
    except RuleError as exc:
        raise ModeError(f"the rule files that could define it cannot be read: {exc}") from None


def load_outputs(entries: Any) -> tuple[OutputBase, ...]:
    """The [[outputs]] tables, each into the settings class of its kind (issue 12)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("outputs: a list of tables ([[outputs]])")
    outputs = []
    for i, entry in enumerate(entries):
        kind = entry.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"outputs[{i}].kind: one of {', '.join(KINDS)}")
        rest = {k: v for k, v in entry.items() if k != "kind"}
        output = _section(KINDS[kind], rest, f"outputs[{i}]")
        problem = check_output(output)
        if problem is not None:
            raise ConfigError(problem)
        outputs.append(output)
    names = [o.label for o in outputs]
    if len(set(names)) != len(names):
        raise ConfigError("outputs: two outputs of a kind need different names (name = ...)")
    return tuple(outputs)


def _actions(entries: Any) -> tuple[ActionSpec, ...]:
    """[[actions]] (issue 11): the response actions, checked by their own layer."""
    try:
        return action_specs(entries)
    except ActionConfigError as exc:
        raise ConfigError(str(exc)) from None


def _check_recording(recording: RecordingConfig) -> str | None:
    if recording.writer not in ("process", "thread"):
        return f"recording.writer: process or thread, not {recording.writer!r}"
    return None


def _check_fleet(config: Config) -> str | None:
    """[store] and [nats] (issue 12): what the fleet sink needs."""
    url, nats = config.store.url, config.nats
    if url and not url.startswith(("postgresql://", "postgres://")):
        return "store.url: a postgresql:// URL, or empty"
    if nats.url and not nats.url.startswith(("nats://", "tls://")):
        return "nats.url: a nats:// URL, or empty"
    if nats.url and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", nats.stream):
        return "nats.stream: letters, digits, _ and - (at most 64)"
    if (url or nats.url) and not config.recording.sqlite:
        return "recording.sqlite: the fleet sink ([store] url, [nats] url) reads siptrap.db"
    if nats.batch < 1:
        return "nats.batch: at least 1"
    return None


def _section(cls: type, values: Any, name: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{name}]: unknown key {key!r}")
        default = known[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key}: a list of strings")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key}: true or false")
        elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{name}.{key}: a whole number")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name}.{key}: a non-negative number")
            value = type(default)(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{name}.{key}: a string")
        kwargs[key] = value
    return cls(**kwargs)


def render(config: Config) -> str:
    """The effective configuration as commented TOML."""
    out = ["# siptrap configuration (siptrap config show). Every key is optional.", ""]
    for name in SECTIONS:
        section = getattr(config, name)
        out.append(f"[{name}]")
        for f in fields(section):
            out.append(f"# {f.metadata.get('doc', '')}")
            out.append(f"{f.name} = {_toml(getattr(section, f.name))}")
        out.append("")
    out.append("# Virtual extensions: users (ranges and lists), password (none: no challenge),")
    out.append(f"# behaviour ({' | '.join(BEHAVIOURS)}), answer_after, ring_timeout, redirect_to,")
    out.append(f"# call_duration, media ({' | '.join(MEDIA_MODES)}), media_file.")
    for entry in config.extensions:
        out.append("[[extensions]]")
        out += [f"{_key(key)} = {_toml(value)}" for key, value in entry.items()]
        out.append("")
    out += _render_actions(config.actions)
    out += _render_upstream(config.upstream)
    out.append("# Your own personalities: [personalities.NAME] with base = one of")
    out.append(f"# {', '.join(BUILTIN)} and any of: server, user_agent, allow, supported, realm,")
    out.append("# nonce_style, tag_style, challenge_invite, unknown_user_status, reasons...")
    for pname, values in config.personalities.items():
        out.append(f"[personalities.{_key(pname)}]")
        out += [f"{_key(key)} = {_toml(value)}" for key, value in values.items()]
        out.append("")
    out.append("# Outputs: [[outputs]] with kind = " + " | ".join(KINDS) + " (README: Outputs).")
    for output in config.outputs:
        out += ["[[outputs]]", f"kind = {_toml(output.kind)}"]
        for f in fields(output):
            out += [
                f"# {f.metadata.get('doc', '')}",
                f"{f.name} = {_toml(getattr(output, f.name))}",
            ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _render_actions(specs: tuple[ActionSpec, ...]) -> list[str]:
    out = ["# Response actions (README, Inside a VoIP domain): [[actions]] with kind = one of"]
    out.append("# kamailio, nftables, blocklist, webhook, program, svcrash.")
    default = {f.name: f.default for f in fields(ActionSpec) if f.name != "kind"}
    for spec in specs:
        out.append("[[actions]]")
        out.append(f"kind = {_toml(spec.kind)}")
        for name, value in default.items():
            if getattr(spec, name) != value:
                out.append(f"{name} = {_toml(getattr(spec, name))}")
        out.append("")
    return out


def _render_upstream(upstreams: tuple[UpstreamConfig, ...]) -> list[str]:
    out = ["# Registrars siptrap registers its extensions at (README, Inside a VoIP domain)."]
    for up in upstreams:
        out.append("[[upstream]]")
        out.append(f"registrar = {_toml(up.registrar)}")
        out.append(f"users = {_toml(','.join(up.users))}")
        for name in ("username", "password", "domain", "tls_ca", "dns"):
            if getattr(up, name):
                out.append(f"{name} = {_toml(getattr(up, name))}")
        if not up.tls_verify:
            out.append("tls_verify = false")
        out.append(f"expires = {up.expires}")
        if up.outbound_proxy:
            host, port = up.outbound_proxy
            out.append(
                f"outbound_proxy = {_toml(f'[{host}]:{port}' if ':' in host else f'{host}:{port}')}"
            )
        out.append("")
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return _string(str(value))


def _string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest
    as it is (TOML files are UTF-8; JSON's surrogate-pair escapes are not TOML)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name: Any) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    text = str(name)
    return text if _BARE_KEY.fullmatch(text) else _string(text)
