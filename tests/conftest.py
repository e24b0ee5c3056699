"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# No per-example deadline (the 2-core machine is shared and noisy); in CI, the same
# examples every run, so that a red run can be reproduced.
settings.register_profile("siptrap", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "siptrap")

DATA = Path(__file__).parent / "data"
RFC4475 = DATA / "rfc4475"


# What a careful server answers to each invalid or semantically wrong RFC 4475 request
# (sections 3.1.2 and 3.3).
RFC4475_STATUS = {
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "multi01": 400,
    "mcl01": 400,
    "zeromf": 483,
    "bext01": 420,
    "invut": 415,
}


def rfc4475(name: str) -> bytes:
    return (RFC4475 / f"{name}.dat").read_bytes()


def require_tool(name: str) -> str:
    """Path of a real tool; skip without it, unless SIPTRAP_REQUIRE_TOOLS=1 (then fail)."""
    path = shutil.which(name)
    if path is None:
        venv_bin = Path(__file__).resolve().parents[1] / ".venv" / "bin" / name
        path = str(venv_bin) if venv_bin.exists() else None
    if path is None:
        if os.environ.get("SIPTRAP_REQUIRE_TOOLS") == "1":
            pytest.fail(f"required tool {name!r} is not installed")
        pytest.skip(f"{name} not installed")
    return path
