"""Output sinks: JSON lines, SQLite (in siptrap.store), console."""
