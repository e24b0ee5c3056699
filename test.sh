#!/usr/bin/env bash
# Runs the whole siptrap test suite on a fresh Debian machine: installs the real SIP
# tools the tests drive (when run as root), builds a virtual environment in .venv,
# installs siptrap with its test dependencies, then runs ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. ./test.sh -k sdp).
set -euo pipefail
cd "$(dirname "$0")"

APT_TOOLS=(sip-tester sipsak tshark baresip-core chromium sngrep fail2ban dnsmasq-base tcpdump
    traceroute iproute2 kamailio kamailio-tls-modules nftables postgresql nats-server)
missing=()
for pkg in "${APT_TOOLS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "== not root: tests that need ${missing[*]} will be skipped"
    fi
fi
if [ "$(id -u)" = 0 ]; then
    # As root every real tool was installed above: a missing one is a failure, not a skip.
    export SIPTRAP_REQUIRE_TOOLS=1
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
