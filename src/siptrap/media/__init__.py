"""The media core: RTP/RTCP parsing, G.711, stream reassembly, DTMF, recording, tones.

Pure pieces with no sockets or event loop: packets and arrival times go in, PCM, digit
events and files (at paths the caller chooses) come out.
"""

from .codecs import Codec, codec_from_rtpmap, g722_available, make_decoder, make_encoder
from .defects import MEDIA_DEFECTS
from .dtmf import DtmfEvent, Rfc4733Decoder, parse_info_dtmf, parse_telephone_event
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter
from .recorder import RecordingSummary, StreamRecorder
from .rtp import RtcpCompound, RtpPacket, build_rtp, looks_like_rtcp, parse_rtcp, parse_rtp
from .stream import PcmFrame, StreamAssembler, StreamStats
from .tones import Packetiser, busy, ringback, voice_prompt
from .wav import WavWriter

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "MEDIA_DEFECTS",
    "Codec",
    "DtmfEvent",
    "Packetiser",
    "PcapWriter",
    "PcmFrame",
    "RecordingSummary",
    "Rfc4733Decoder",
    "RtcpCompound",
    "RtpPacket",
    "StreamAssembler",
    "StreamRecorder",
    "StreamStats",
    "WavWriter",
    "alaw_decode",
    "alaw_encode",
    "build_rtp",
    "busy",
    "codec_from_rtpmap",
    "g722_available",
    "looks_like_rtcp",
    "make_decoder",
    "make_encoder",
    "parse_info_dtmf",
    "parse_rtcp",
    "parse_rtp",
    "parse_telephone_event",
    "ringback",
    "ulaw_decode",
    "ulaw_encode",
    "voice_prompt",
]
