"""Reading a tcpdump capture back: TCP payloads reassembled per direction,
and a search for secrets in every form they could cross a wire in clear
(raw bytes, base64 at each of its three alignments, URL-safe base64, hex)."""
from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from pathlib import Path

Flow = tuple[str, int, str, int]  # src ip, src port, dst ip, dst port


@dataclass
class Wire:
    """What a capture holds: payload bytes per TCP direction."""

    streams: dict[Flow, bytearray] = field(default_factory=dict)
    packets: int = 0

    @property
    def total(self) -> int:
        return sum(len(s) for s in self.streams.values())

    def ports(self) -> set[int]:
        return {p for f in self.streams for p in (f[1], f[3])}

    def find(self, needle: bytes) -> list[Flow]:
        """The directions whose payload contains ``needle``."""
        return [f for f, data in self.streams.items() if needle in data]


def _ip4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def read_pcap(path: Path) -> Wire:
    """Parse a classic pcap (Ethernet or Linux cooked) of IPv4/IPv6 TCP."""
    data = path.read_bytes()
    if len(data) < 24:
        return Wire()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    wire = Wire()
    nxt: dict[Flow, int] = {}
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        wire.packets += 1
        if linktype == 1:  # Ethernet
            if len(pkt) < 14:
                continue
            ethertype, l3 = struct.unpack(">H", pkt[12:14])[0], pkt[14:]
        elif linktype == 113:  # Linux cooked
            ethertype, l3 = struct.unpack(">H", pkt[14:16])[0], pkt[16:]
        else:
            continue
        if ethertype == 0x0800 and len(l3) >= 20 and l3[9] == 6:
            ihl = (l3[0] & 0x0F) * 4
            total = struct.unpack(">H", l3[2:4])[0]
            src, dst, tcp = _ip4(l3[12:16]), _ip4(l3[16:20]), l3[ihl:total]
        elif ethertype == 0x86DD and len(l3) >= 40 and l3[6] == 6:
            plen = struct.unpack(">H", l3[4:6])[0]
            src, dst, tcp = l3[8:24].hex(), l3[24:40].hex(), l3[40:40 + plen]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload:
            continue
        flow = (src, sport, dst, dport)
        buf = wire.streams.setdefault(flow, bytearray())
        expected = nxt.get(flow, seq)
        skip = (expected - seq) % (1 << 32)
        if skip >= len(payload) and flow in nxt:
            continue  # a retransmission of bytes already kept
        if skip >= 1 << 31:  # a gap (capture started mid-stream or lost): keep going
            skip = 0
        buf += payload[skip:]
        nxt[flow] = (seq + len(payload)) % (1 << 32)
    return wire


def encodings(secret: bytes) -> list[bytes]:
    """Forms of ``secret`` that would show if it crossed in clear, inside any
    larger encoded payload: itself, its hex, and the base64 (standard and
    URL-safe) of any text containing it, at each of the three alignments
    (the characters that depend on neighbouring bytes are trimmed)."""
    out = [secret, secret.hex().encode()]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + secret)
        start = (pad * 4 + 2) // 3  # first character untouched by the padding bytes
        end = (len(b"\0" * pad + secret) // 3) * 4  # last full group
        core = enc[start:end]
        if len(core) >= 8:
            out += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def leaks(wire: Wire, secret: bytes | str) -> list[tuple[bytes, Flow]]:
    """Every (form, direction) in which ``secret`` appears in ``wire``."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return [(form, flow) for form in encodings(raw) for flow in wire.find(form)]
