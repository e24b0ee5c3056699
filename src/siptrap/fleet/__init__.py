"""Fleets: many sensors, one store. The sensor's spool and publisher (to NATS JetStream or
straight to PostgreSQL), the collector that writes NATS to PostgreSQL, cross-sensor
correlation and threat-intelligence exports."""
