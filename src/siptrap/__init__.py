"""siptrap: a SIP/VoIP honeypot."""

__version__ = "0.1.0"
