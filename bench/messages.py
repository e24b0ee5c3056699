"""Typical messages the benchmarks use (as attack tools and phones send them)."""

INVITE = (
    b"INVITE sip:100@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---5a9e2f3c1d7b8e42;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:200@198.51.100.7:5060;transport=UDP>\r\n"
    b'To: "100" <sip:100@192.0.2.10>\r\n'
    b'From: "200" <sip:200@192.0.2.10>;tag=8a3f21c7\r\n'
    b"Call-ID: ZDc2MmIwNWE5ZmRkNmQ4YjE4OTc2MjVlNWVmNDg3NzE.\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Supported: replaces, norefersub, extended-refer, timer, X-cisco-serviceuri\r\n"
    b"User-Agent: Z 5.4.12 v2.10.13.2\r\n"
    b"Allow-Events: presence, kpml, talk\r\n"
    b"Content-Length: 237\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=Z 0 1 IN IP4 198.51.100.7\r\n"
    b"s=Z\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 8000 RTP/AVP 3 110 8 0 98 101\r\n"
    b"a=rtpmap:110 speex/8000\r\n"
    b"a=rtpmap:98 iLBC/8000\r\n"
    b"a=fmtp:98 mode=20\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)

REGISTER = (
    b"REGISTER sip:192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5063;branch=z9hG4bK-1927543788;rport\r\n"
    b"Content-Length: 0\r\n"
    b'From: "100"<sip:100@192.0.2.10>;tag=313030013433323236323537\r\n'
    b"Accept: application/sdp\r\n"
    b"User-Agent: friendly-scanner\r\n"
    b'To: "100"<sip:100@192.0.2.10>\r\n'
    b"Contact: sip:100@198.51.100.7:5063\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Call-ID: 1163913356123412342134\r\n"
    b"Max-Forwards: 70\r\n"
    b'Authorization: Digest username="100",realm="asterisk",nonce="1712345678/5a1e0c9d8b7a'
    b'6f5e4d3c2b1a09f8e7d6",uri="sip:192.0.2.10",response="6c1d7b8a9e0f1a2b3c4d5e6f7a8b9c0d",'
    b"algorithm=MD5\r\n"
    b"\r\n"
)

OPTIONS = (
    b"OPTIONS sip:100@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-3441431929;rport\r\n"
    b"Content-Length: 0\r\n"
    b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6434396633623535313363340131363538383432383234\r\n'
    b"Accept: application/sdp\r\n"
    b"User-Agent: friendly-scanner\r\n"
    b'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
    b"Contact: sip:100@198.51.100.7:5060\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Call-ID: 62813839216335837491371\r\n"
    b"Max-Forwards: 70\r\n"
    b"\r\n"
)
