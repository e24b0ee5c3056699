"""Registering siptrap's extensions at the domain's real registrars (a UAC on the same
sans-I/O core): `[[upstream]]` entries, digest, refresh, bounded backoff, Expires 0 on a
clean stop. `client.RegistrarClient` does no I/O: app.py moves its datagrams."""
