"""The [media] settings: RTP ports, call and recording caps, the IVR."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ConfigError, doc

MIB = 1024 * 1024
IVR_OUTCOMES = ("ring", "busy")
TONE_REGIONS = ("eu", "us")


@dataclass(frozen=True)
class MediaConfig:
    port_min: int = doc("lowest RTP port (a stream takes an even port and the next)", 10000)
    port_max: int = doc("highest UDP port for RTP and RTCP", 20000)
    max_calls: int = doc("answered calls with media at once; more get 486 Busy Here", 200)
    max_streams: int = doc("audio streams (m= lines) accepted per call", 4)
    max_call_duration: float = doc("seconds after which siptrap hangs up any answered call", 600.0)
    rtp_timeout: float = doc("seconds without RTP or RTCP before siptrap hangs up; 0 = never", 30.0)
    max_packet_rate: int = doc("datagrams a second taken per stream; more are dropped", 500)
    record: bool = doc("record every stream to pcap and WAV files under DATA/recordings/", True)
    max_call_bytes: int = doc("bytes of recordings per call: half pcap, half WAV", 32 * MIB)
    max_total_bytes: int = doc("bytes all recordings may take together", 10240 * MIB)
    prompt_file: str = doc("WAV answered calls hear; empty: DATA/media/prompt.wav", "")
    tone_region: str = doc("ringback and busy tones: eu or us", "eu")
    ivr_digit_timeout: float = doc("IVR: seconds after the last key that end the number", 4.0)
    ivr_max_digits: int = doc("IVR: keys that end the number (# ends it too)", 24)
    ivr_outcome: str = doc("IVR: after the number, ring (ringback) or busy (busy tone)", "ring")
    ivr_outcome_seconds: float = doc("IVR: seconds of that tone, then siptrap hangs up", 20.0)

    def __post_init__(self) -> None:
        if not 1 <= self.port_min < self.port_max <= 65535:
            raise ConfigError("media.port_min and port_max: 1 <= port_min < port_max <= 65535")
        if self.ivr_outcome not in IVR_OUTCOMES:
            raise ConfigError(f"media.ivr_outcome: one of {', '.join(IVR_OUTCOMES)}")
        if self.tone_region not in TONE_REGIONS:
            raise ConfigError(f"media.tone_region: one of {', '.join(TONE_REGIONS)}")
