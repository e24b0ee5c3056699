"""Programs the recon network-namespace tests run inside the attacker's namespace:

python recon_lab.py rdap ADDR PORT [CERT KEY]
    an RDAP responder (GET /ip/<addr>), over HTTPS when CERT and KEY are given
python recon_lab.py ua LOCAL HONEYPOT SECONDS CALL [CALL...]
    a SIP UA on LOCAL:5060 (UDP, and a TCP listener on 5060): sends each CALL's
    INVITE (a JSON object: call_id, contact, sdp_c, sdp_o, via, record_route,
    user_agent, no_ack) to HONEYPOT:5060, ACKs final answers (unless no_ack),
    answers OPTIONS with 200 as "AttackerUA/1.0" when a call says answer_options,
    and exits after SECONDS (or when terminated). With an IPv6 LOCAL it listens on
    every address of its host ([::]:5060); its INVITEs leave from LOCAL when that is its
    one address on the honeypot's prefix (the kernel's choice of source).
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def rdap(addr: str, port: int, cert: str = "", key: str = "") -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ip = self.path.rsplit("/", 1)[-1]
            body = json.dumps(
                {
                    "objectClassName": "ip network",
                    "handle": "LAB-ATTACKER-NET",
                    "name": "ATTACKER-LAB",
                    "country": "ZZ",
                    "startAddress": ip,
                    "endAddress": ip,
                    "arin_originas0_originautnums": [64512],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rdap+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(HTTPServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    server = Server((addr, port), Handler)
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def ip_kind(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def invite(local: str, honeypot: str, call: dict[str, str]) -> bytes:
    c = call.get("sdp_c", local)
    o = call.get("sdp_o", c)
    kind = "IP6" if call.get("ip6") else ""
    sdp = (
        f"v=0\r\no=- 1 1 IN {kind or ip_kind(o)} {o}\r\ns=-\r\nc=IN {kind or ip_kind(c)} {c}\r\n"
        "t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
    ).encode()
    hp, via = bracket(honeypot), bracket(call.get("via", local))
    lines = [
        f"INVITE sip:555@{hp} SIP/2.0",
        f"Via: SIP/2.0/UDP {via}:5060;branch=z9hG4bK{call['call_id']};rport",
        f"From: <sip:100@{hp}>;tag=lab{call['call_id']}",
        f"To: <sip:555@{hp}>",
        f"Call-ID: {call['call_id']}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:100@{bracket(call.get('contact', local))}:5060>",
        "Max-Forwards: 70",
        f"User-Agent: {call.get('user_agent', 'AttackerUA/1.0')}",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp)}",
    ]
    if call.get("record_route"):
        lines.insert(2, f"Record-Route: <sip:{bracket(call['record_route'])};lr>")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + sdp


def ack_for(response: str) -> bytes:
    keep = [
        ln
        for ln in response.split("\r\n")[1:]
        if ln.split(":")[0].lower() in ("via", "from", "to", "call-id")
    ]
    call_id = next(ln.split(":", 1)[1].strip() for ln in keep if ln.lower().startswith("call-id"))
    head = [f"ACK sip:555@{call_id} SIP/2.0", *keep, "CSeq: 1 ACK", "Content-Length: 0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def ua(local: str, honeypot: str, seconds: float, calls: list[dict[str, str]]) -> None:
    family = socket.AF_INET6 if ":" in local else socket.AF_INET
    where = "::" if family == socket.AF_INET6 else local
    tcp = socket.socket(family, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((where, 5060))
    tcp.listen(16)  # the kernel completes handshakes: an open port
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:  # answer from the address asked, as a real stack does
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.bind((where, 5060))
    answer_options = any(c.get("answer_options") for c in calls)
    for call in calls:
        sock.sendto(invite(local, honeypot, call), (honeypot, 5060))
    end = time.time() + seconds
    while time.time() < end:
        sock.settimeout(max(0.05, end - time.time()))
        try:
            data, ancillary, _flags, addr = sock.recvmsg(65535, 256)
        except TimeoutError:
            break
        info = [(lv, kind, d) for lv, kind, d in ancillary if kind == IPV6_PKTINFO]
        text = data.decode("utf-8", "replace")
        if text.startswith("OPTIONS ") and answer_options:
            keep = [
                ln
                for ln in text.split("\r\n\r\n")[0].split("\r\n")[1:]
                if ln.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            reply = [
                "SIP/2.0 200 OK",
                *keep,
                "User-Agent: AttackerUA/1.0",
                "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
                "Content-Length: 0",
            ]
            sock.sendmsg([("\r\n".join(reply) + "\r\n\r\n").encode()], info, 0, addr)
        elif text.startswith("SIP/2.0 ") and " INVITE" in text.split("CSeq:", 1)[-1][:20]:
            status = int(text.split(" ", 2)[1])
            if status >= 200 and not any(c["call_id"] in text and c.get("no_ack") for c in calls):
                sock.sendmsg([ack_for(text.split("\r\n\r\n")[0])], info, 0, addr)
    sock.close()
    tcp.close()


if __name__ == "__main__":
    if sys.argv[1] == "rdap":
        rdap(sys.argv[2], int(sys.argv[3]), *sys.argv[4:6])
    elif sys.argv[1] == "ua":
        ua(sys.argv[2], sys.argv[3], float(sys.argv[4]), [json.loads(c) for c in sys.argv[5:]])
