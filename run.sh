#!/usr/bin/env bash
# Runs the siptrap honeypot on its embedded defaults on a fresh Debian machine:
# builds a virtual environment in .venv, installs siptrap, then starts `siptrap run`.
# Extra arguments go to `siptrap run` (e.g. ./run.sh --listen udp:127.0.0.1:5070).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/siptrap run "$@"
