"""The operator's view: dashboard pages, REST API under /api/v1, /metrics, runtime control.

Everything here reads siptrap.db read-only, in a worker thread (never on the event loop),
and renders attacker text only through autoescaping templates or JSON/CSV encoders.
"""
