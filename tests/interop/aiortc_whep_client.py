#!/usr/bin/env python3
"""A WHEP *viewer* built on aiortc, an independent WebRTC stack, for
tests/whep_aiortc_client.rs: it POSTs aiortc's own default recvonly offer
(video + audio) to a WHEP endpoint, plays what comes back and reports how
many video frames it decoded.

The offer is aiortc's, unedited: it lists sha-256, sha-384 and sha-512
fingerprints in every section (RFC 8122 allows several), aiortc is a full
ICE agent and the DTLS client. Its only host candidate is --host and it uses
no STUN/TURN server, so it needs no network beyond the test's namespace.

With --corrupt ALG the offer's ALG fingerprint lines get a well-formed value
that matches no certificate (all zero bytes) before sending (aiortc itself
keeps its real description), to show which line the server checks.

Prints "offer fingerprints: ..." (the hash functions the offer lists),
"answer: <status>", then "frames decoded: N" and exits 0 once --frames
frames are decoded; exits 1 on a refused offer or when --timeout passes
first. Only the standard library and aiortc are used.
"""

import argparse
import asyncio
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def http(method: str, url: str, body: bytes = b"", content_type: str = "") -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body or None, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def corrupt(sdp: str, alg: str) -> str:
    out = []
    for line in sdp.split("\r\n"):
        if line.lower().startswith(f"a=fingerprint:{alg} "):
            value = line.split(" ", 1)[1]
            line = f"a=fingerprint:{alg} " + ":".join("00" for _ in value.split(":"))
        out.append(line)
    return "\r\n".join(out)


async def play(url: str, want: int, timeout: float, corrupt_alg: str) -> int:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    decoded = 0
    got_enough = asyncio.Event()

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind != "video":
            return

        async def consume() -> None:
            nonlocal decoded
            try:
                while True:
                    await track.recv()
                    decoded += 1
                    if decoded >= want:
                        got_enough.set()
            except MediaStreamError:
                pass

        asyncio.ensure_future(consume())

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        logging.info("connection: %s", pc.connectionState)

    # Gathers every host candidate before returning: the offer carries them all.
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    algs = [l.split(":", 1)[1].split()[0] for l in offer.splitlines() if l.startswith("a=fingerprint:")]
    print("offer fingerprints: " + " ".join(dict.fromkeys(algs)), flush=True)
    if corrupt_alg:
        offer = corrupt(offer, corrupt_alg)

    status, headers, body = await asyncio.get_running_loop().run_in_executor(
        None, http, "POST", url, offer.encode(), "application/sdp"
    )
    print(f"answer: {status}", flush=True)
    if status != 201:
        print(body.decode(errors="replace"), flush=True)
        await pc.close()
        return 1
    location = urllib.parse.urljoin(url, headers.get("Location", ""))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    try:
        await asyncio.wait_for(got_enough.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    print(f"frames decoded: {decoded}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, http, "DELETE", location)
    await pc.close()
    return 0 if decoded >= want else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="WHEP endpoint, e.g. http://10.200.0.1:8080/whep/live/s")
    ap.add_argument("--host", default="10.200.0.2", help="the only ICE host candidate")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--corrupt", default="", metavar="ALG", help="send a wrong fingerprint for hash ALG, e.g. sha-512")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, stream=sys.stderr)
    # aioice offers every interface's address; the test namespace has two
    # (both veth ends) and maybe link-local IPv6. Advertise exactly one.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [a.host]
    sys.exit(asyncio.run(play(a.url, a.frames, a.timeout, a.corrupt)))


if __name__ == "__main__":
    main()
