"""What the honeypot answers: personalities, extension plan, registrar, calls, credentials."""
