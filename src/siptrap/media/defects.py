"""The catalogue of media defects: what parsing RTP, RTCP and DTMF bodies records.

Media parsing keeps going on malformed input; each problem becomes one of the names
below in a `defects` tuple. A test checks that every name the code uses is listed here.
"""

from __future__ import annotations

MEDIA_DEFECTS: dict[str, str] = {
    # RTP
    "rtp_truncated_csrc": "the CSRC count says more CSRC entries than the packet holds",
    "rtp_truncated_extension": "the header extension is longer than the packet",
    "rtp_bad_padding": "the padding count is zero or longer than the payload",
    "rtp_empty_payload": "an RTP packet with no payload",
    # RTCP
    "rtcp_truncated": "an RTCP packet's length field runs past the datagram",
    "rtcp_bad_version": "an RTCP packet in a compound datagram is not version 2",
    "rtcp_short_packet": "an RTCP packet too short for its packet type",
    "rtcp_unknown_type": "an RTCP packet type other than 200-207",
    "rtcp_too_many_packets": "more packets in a compound datagram than the cap; rest ignored",
    # DTMF
    "dtmf_extra_payload": "a telephone-event payload longer than one event (redundancy?)",
    "dtmf_unknown_event": "a telephone-event code that is not a DTMF digit or flash",
    "dtmf_bad_signal": "a SIP INFO DTMF body whose Signal is missing or not a DTMF key",
    "dtmf_bad_duration": "a SIP INFO DTMF body whose Duration is not a number",
}
