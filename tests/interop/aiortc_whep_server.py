#!/usr/bin/env python3
"""A WHEP *sender* built on aiortc, an independent WebRTC stack, for
tests/loadgen_interop.rs: `POST /whep/{app}/{stream}` with a recvonly SDP offer
gets a 201 with an aiortc answer that sends an H.264 video track of generated
frames; `DELETE` on the returned Location ends the session.

aiortc is a full ICE agent (not lite), answers `a=setup:active` (it is the
DTLS client) and lists sha-256/384/512 fingerprints: the loadgen must cope
with all of that. Its host candidates are restricted to --host (the test's
namespace address) and it uses no STUN/TURN server, so it needs no network
beyond the namespace.

Only the standard library, aiortc and PyAV (an aiortc dependency) are used.
Prints "aiortc-whep listening on HOST:PORT" once it accepts requests.
"""

import argparse
import asyncio
import itertools
import logging
import sys

import aioice.ice
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack


class PatternTrack(VideoStreamTrack):
    """Generated frames: a scrolling gradient with a moving bar (changes every
    frame, so the encoder sends real P-frames), yuv420p, no numpy needed."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.counter = 0
        self.ramp = bytes(range(256)) * 16

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        t = self.counter
        self.counter += 1
        y, u, v = frame.planes
        off = (t * 4) % 256
        row = self.ramp[off : off + y.line_size]
        bar = (t * 8) % max(1, self.height - 16)
        luma = bytearray(row * self.height)
        for r in range(bar, bar + 16):
            start = r * y.line_size
            luma[start : start + self.width] = b"\xeb" * self.width
        y.update(bytes(luma))
        u.update(bytes([(t * 3) % 256]) * u.buffer_size)
        v.update(bytes([128]) * v.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class WhepServer:
    def __init__(self, host: str, width: int, height: int) -> None:
        self.host = host
        self.width, self.height = width, height
        self.sessions: dict[str, RTCPeerConnection] = {}
        self.ids = itertools.count(1)

    async def answer(self, offer_sdp: str) -> tuple[str, str]:
        # No ICE servers: host candidates only (aiortc's default adds a public STUN server).
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sid = str(next(self.ids))
        self.sessions[sid] = pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logging.info("session %s: %s", sid, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close(sid)

        track = PatternTrack(self.width, self.height)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for t in pc.getTransceivers():
            if t.kind == "video":
                t.sender.replaceTrack(track)
                t.direction = "sendonly"
        answer = await pc.createAnswer()
        # Gathers every (host) candidate before returning: the answer carries them all.
        await pc.setLocalDescription(answer)
        return sid, pc.localDescription.sdp

    async def close(self, sid: str) -> bool:
        pc = self.sessions.pop(sid, None)
        if pc is None:
            return False
        await pc.close()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            status, extra, out = await self.route(method, path.split("?", 1)[0], body)
        except Exception as e:  # a broken request must not kill the server
            logging.exception("request failed")
            status, extra, out = "500 Internal Server Error", {}, str(e).encode()
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        writer.write(
            f"HTTP/1.1 {status}\r\n{hdrs}Content-Length: {len(out)}\r\nConnection: close\r\n\r\n".encode()
            + out
        )
        await writer.drain()
        writer.close()

    async def route(self, method: str, path: str, body: bytes):
        parts = [p for p in path.split("/") if p]
        if method == "POST" and len(parts) == 3 and parts[0] == "whep":
            sid, sdp = await self.answer(body.decode())
            extra = {"Content-Type": "application/sdp", "Location": f"/whep/session/{sid}"}
            return "201 Created", extra, sdp.encode()
        if method == "DELETE" and len(parts) == 3 and parts[:2] == ["whep", "session"]:
            found = await self.close(parts[2])
            return ("200 OK" if found else "404 Not Found"), {}, b""
        return "404 Not Found", {}, b""


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="10.200.0.1", help="address to listen on and the only ICE host candidate")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, stream=sys.stderr)
    w, h = (int(x) for x in a.size.split("x"))

    # aioice offers every interface's address; the test namespace has two
    # (both veth ends) and maybe link-local IPv6. Advertise exactly one.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [a.host]

    srv = WhepServer(a.host, w, h)
    server = await asyncio.start_server(srv.handle, a.host, a.port)
    print(f"aiortc-whep listening on {a.host}:{a.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
