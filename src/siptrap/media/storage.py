"""Where a call's recordings go, and how much disk all recordings may take.

Recordings live under `recordings/` in the data directory, one folder per UTC day:

    recordings/2024-05-01/20240501T120304Z_3f2a9c01d4e7_a84b-12@host_s0_in.wav

The name starts with the UTC time the call was answered, then the first 12 hex digits of
SHA-256 of the Call-ID (so a person holding a Call-ID can find its files with
`call_digest`), then at most 32 characters of the Call-ID with everything outside
`[A-Za-z0-9._@-]` replaced by `-` (a hint for the eye, never the only key). A Call-ID
comes from the attacker: it is never used as a path component unsanitised, and the
sanitised part can hold no `/` and cannot be `.` or `..` (it always follows a prefix).

`DiskBudget` keeps the total bounded: each call reserves its per-call cap (or what is
left) before it records, and gives back what it did not use when it ends.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RECORDINGS_DIR = "recordings"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")
HINT_LENGTH = 32
MAX_SUFFIX = 1000


def call_digest(call_id: str) -> str:
    """The 12 hex digits that name a call's recordings (SHA-256 of the Call-ID's bytes)."""
    data = call_id.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:12]


def call_hint(call_id: str) -> str:
    """A short, filesystem-safe rendering of a Call-ID for human eyes."""
    hint = _UNSAFE.sub("-", call_id)[:HINT_LENGTH].strip(".-")
    return hint or "x"


def recording_stem(call_id: str, started: float) -> str:
    """`<UTC time>_<digest>_<hint>`: the common start of a call's file names."""
    when = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{when}_{call_digest(call_id)}_{call_hint(call_id)}"


@dataclass(frozen=True, slots=True)
class RecordingFiles:
    """The paths of one call's recordings: a pcap, and a WAV per stream and direction.

    `relative` gives a path as written into events and the store: relative to the data
    directory (`recordings/<day>/<name>`)."""

    data_dir: Path
    directory: Path
    stem: str

    @property
    def pcap(self) -> Path:
        return self.directory / f"{self.stem}.pcap"

    def wav(self, stream: int, direction: str) -> Path:
        """`direction` is "in" (what the caller sent) or "out" (what siptrap played)."""
        if direction not in ("in", "out"):
            raise ValueError(f"bad direction {direction!r}")
        return self.directory / f"{self.stem}_s{int(stream)}_{direction}.wav"

    def relative(self, path: Path | str | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).relative_to(self.data_dir).as_posix()
        except ValueError:
            return str(path)


def allocate_files(data_dir: Path, call_id: str, started: float) -> RecordingFiles:
    """Make the day's folder and choose a stem no existing file uses (a Call-ID seen
    twice gets `-2`, `-3`...: files are never overwritten)."""
    day = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d")
    directory = data_dir / RECORDINGS_DIR / day
    directory.mkdir(parents=True, exist_ok=True)
    base = recording_stem(call_id, started)
    stem = base
    for n in range(2, MAX_SUFFIX):
        if not _stem_taken(directory, stem):
            break
        stem = f"{base}-{n}"
    else:
        stem = f"{base}-{os.urandom(4).hex()}"
    return RecordingFiles(data_dir, directory, stem)


def _stem_taken(directory: Path, stem: str) -> bool:
    """Does a recording already use this stem? Looks at the names a recording starts
    with (its pcap, its first stream's WAVs), not at the whole day's folder."""
    files = RecordingFiles(directory.parent.parent, directory, stem)
    return any(path.exists() for path in (files.pcap, files.wav(0, "in"), files.wav(0, "out")))


def disk_usage(root: Path) -> int:
    """Bytes the files under `root` take (0 when it does not exist); symlinks are counted
    as themselves, never followed."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # deleted meanwhile
    return total


class DiskBudget:
    """The cap on all recordings together: bytes on disk plus bytes reserved by calls
    recording now never exceed `total`."""

    def __init__(self, total: int, used: int = 0) -> None:
        self.total = max(0, total)
        self.used = max(0, used)
        self.reserved = 0

    @property
    def free(self) -> int:
        return max(0, self.total - self.used - self.reserved)

    def reserve(self, wanted: int) -> int:
        """Reserve up to `wanted` bytes; return how many were granted (maybe 0)."""
        grant = min(max(0, wanted), self.free)
        self.reserved += grant
        return grant

    def settle(self, granted: int, written: int) -> None:
        """A call that was granted `granted` bytes finished having written `written`."""
        self.reserved = max(0, self.reserved - granted)
        self.used += max(0, written)
