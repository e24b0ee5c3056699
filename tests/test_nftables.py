"""The nftables action in a network namespace the test creates (and removes): the firewall
step adds the source to a set with a timeout, IPv4 and IPv6, and relaxing removes it.
Skipped, saying why, where namespaces or nft are refused (not root, no nf_tables)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from conftest import require_tool
from siptrap.actions.base import ActionFailed, Job
from siptrap.actions.nftables import NftablesAction
from siptrap.actions.policy import Change
from siptrap.actions.settings import ActionSpec

pytestmark = pytest.mark.tools


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("nft")
    ip = require_tool("ip")
    name = f"siptrap-test-{os.getpid()}-{secrets.token_hex(3)}"
    made = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        probe = subprocess.run(
            [ip, "netns", "exec", name, "nft", "list", "ruleset"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip(f"the kernel refuses nft in a namespace: {probe.stderr.strip()}")
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True, check=False)


def job(src: str, step: str | None, previous: str | None) -> Job:
    expires = time.time() + 120 if step else None
    return Job(Change(src, previous, step, "scan", "a1", expires, "persisted"), {}, time.time())


def listed(netns: str, set_name: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "set", "inet", "siptrap", set_name],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_firewall_step_adds_and_relaxing_removes_set_elements(netns: str) -> None:
    action = NftablesAction(ActionSpec("nftables", netns=netns))
    assert action.apply(job("198.51.100.7", "forbid", "try_later")) is None  # not its step
    done = action.apply(job("198.51.100.7", "firewall", "forbid"))
    assert done is not None and done[0] == "add element"
    assert action.apply(job("2001:db8::7", "firewall", "forbid")) is not None
    v4, v6 = listed(netns, "blocked4"), listed(netns, "blocked6")
    assert "198.51.100.7 timeout" in v4 and "2001:db8::7 timeout" in v6
    # The drop rule is in place for the sets' members.
    chain = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "chain", "inet", "siptrap", "input"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ip saddr @blocked4 drop" in chain and "ip6 saddr @blocked6 drop" in chain
    # A second action finds the table and leaves it (and its rules) alone.
    NftablesAction(ActionSpec("nftables", netns=netns)).setup()
    assert chain.count("drop") == 2
    # A refresh (the attack goes on at the top step) renews the element's timeout.
    later = Job(
        Change(
            "2001:db8::7", "firewall", "firewall", "scan", "a1", time.time() + 3000, "refreshed"
        ),
        {},
        time.time(),
    )
    assert action.apply(later) is not None
    assert "2001:db8::7 timeout 50m" in listed(netns, "blocked6")
    gone = action.apply(job("198.51.100.7", "forbid", "firewall"))
    assert gone is not None and gone[0] == "delete element"
    assert "198.51.100.7" not in listed(netns, "blocked4")
    action.remove("198.51.100.7")  # lifting what is not there is not an error


def test_refused_nft_and_bad_addresses_fail_with_the_reason(netns: str) -> None:
    refused = NftablesAction(ActionSpec("nftables", nft="/bin/false"))
    with pytest.raises(ActionFailed, match="nft"):
        refused.apply(job("198.51.100.7", "firewall", "forbid"))
    action = NftablesAction(ActionSpec("nftables", netns=netns))
    with pytest.raises(ActionFailed, match="not an address"):
        action.apply(job("198.51.100.7 } ; flush ruleset ; {", "firewall", "forbid"))
