//! HTTP signaling (WHEP, RTS JSON, SRS) and reading the answer. Blocking:
//! it runs on a few ramp-paced threads, never on the media workers.

use crate::{Error, FailureKind, Signaling};
use rts_sdp::SessionDescription;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// Where to signal, derived from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port` (no trailing slash).
    pub base: String,
    /// Host as written in the URL (for the SRS `webrtc://` stream URL).
    pub host: String,
    /// Second-to-last path segment.
    pub app: String,
    /// Last path segment.
    pub stream: String,
    /// Query string without `?` (may be empty).
    pub query: String,
    /// Endpoint the offer is POSTed to.
    pub endpoint: String,
    /// Shape of the request and response.
    pub signaling: Signaling,
}

impl Target {
    /// Splits `http://host[:port]/.../app/stream[?query]`.
    pub fn parse(url: &str, signaling: Signaling) -> Result<Target, Error> {
        let bad = |why| Error::Url(url.to_string(), why);
        let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// is supported"))?;
        let (hostport, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        if hostport.is_empty() {
            return Err(bad("no host"));
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut segs = path.rsplit('/').filter(|s| !s.is_empty());
        let stream = segs.next().ok_or_else(|| bad("path must end in /app/stream"))?;
        let app = segs.next().ok_or_else(|| bad("path must end in /app/stream"))?;
        let base = format!("http://{hostport}");
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).to_string();
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        let endpoint = match signaling {
            Signaling::Whep => url.to_string(),
            Signaling::Rts => format!("{base}/{app}/{stream}{q}"),
            Signaling::Srs => format!("{base}/rtc/v1/play/"),
        };
        Ok(Target { base, host, app: app.into(), stream: stream.into(), query: query.into(), endpoint, signaling })
    }

    /// `webrtc://host/app/stream[?query]`, the stream URL RTS and SRS bodies carry.
    pub fn stream_url(&self) -> String {
        let q = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        format!("webrtc://{}/{}/{}{q}", self.host, self.app, self.stream)
    }
}

/// What the viewer needs from the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The server's ICE candidate (highest-priority UDP RTP candidate, IPv4 preferred).
    pub addr: SocketAddr,
    /// Its highest-priority IPv6 one, if it offered one (`--ipv6`).
    pub addr6: Option<SocketAddr>,
    /// Server ICE ufrag.
    pub ufrag: String,
    /// Server ICE password (STUN integrity key).
    pub pwd: String,
    /// `sha-256` fingerprint, upper-case hex with colons.
    pub fingerprint: String,
    /// Negotiated H.264 payload type, if video was accepted.
    pub h264_pt: Option<u8>,
    /// Header extension id of the playout-delay extension on video, if the
    /// answer accepted the one our offer carries.
    pub playout_delay_id: Option<u8>,
    /// Video SSRC: the first of the answer's `a=ssrc-group:FID`, else the
    /// video section's first `a=ssrc`.
    pub video_ssrc: Option<u32>,
    /// Negotiated RTX payload type for the H.264 codec (`apt=`).
    pub rtx_pt: Option<u8>,
    /// RTX SSRC: the second of the answer's `a=ssrc-group:FID`.
    pub rtx_ssrc: Option<u32>,
    /// Negotiated Opus payload type, if audio was accepted.
    pub opus_pt: Option<u8>,
    /// Negotiated RED payload type (RFC 2198, blocks of Opus), if any.
    pub red_pt: Option<u8>,
    /// WHEP resource to DELETE at teardown (absolute URL).
    pub location: Option<String>,
    /// The answer says `a=setup:active`: the peer is the DTLS client and we
    /// serve (full WebRTC stacks such as aiortc answer our `actpass` so).
    pub dtls_server: bool,
    /// The answer says `a=ice-lite`. A full ICE peer also checks us and runs
    /// consent freshness; the viewer answers those requests either way.
    pub ice_lite: bool,
}

/// A ureq agent with connect and total timeouts, so a dead server cannot hang a thread.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(timeout).timeout(timeout).redirects(0).build()
}

/// `http://host:port` of an absolute URL.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
}

/// POSTs `offer` and returns the parsed answer, or the failure category.
pub fn signal(agent: &ureq::Agent, t: &Target, offer: &str) -> Result<Remote, FailureKind> {
    let mut endpoint = t.endpoint.clone();
    let mut base = t.base.clone();
    // A cluster node over capacity answers 307 with the same endpoint on
    // another node: the offer goes there (a few hops at most).
    let mut redirects = 0;
    let resp = loop {
        let resp = match t.signaling {
            Signaling::Whep => agent.post(&endpoint).set("Content-Type", "application/sdp").send_string(offer),
            Signaling::Rts => agent.post(&endpoint).set("Content-Type", "application/json").send_string(
                &json!({"version": "2", "sdk_version": "rts-loadgen", "streamurl": t.stream_url(),
                        "jsep": {"type": "offer", "sdp": offer}})
                .to_string(),
            ),
            Signaling::Srs => agent.post(&endpoint).set("Content-Type", "application/json").send_string(
                &json!({"api": endpoint, "streamurl": t.stream_url(), "clientip": null, "sdp": offer}).to_string(),
            ),
        }
        .map_err(|e| classify_http_error(&e))?;
        if !matches!(resp.status(), 307 | 308) {
            break resp;
        }
        redirects += 1;
        let Some(to) = resp.header("Location").map(|l| absolute(&base, l)).filter(|_| redirects <= 3) else {
            return Err(FailureKind::Http4xx);
        };
        base = origin_of(&to);
        endpoint = to;
    };
    let location = resp.header("Location").map(|l| absolute(&base, l));
    let body = resp.into_string().map_err(|e| classify_io(&e))?;
    let sdp = match t.signaling {
        Signaling::Whep => body,
        Signaling::Rts => json_field(&body, "/jsep/sdp", "/code", 200)?,
        Signaling::Srs => json_field(&body, "/sdp", "/code", 0)?,
    };
    let mut remote = parse_answer(&sdp)?;
    remote.location = location.filter(|_| t.signaling == Signaling::Whep);
    Ok(remote)
}

/// A channel switch (`POST {resource}/switch?stream=...`, empty body).
/// The body is read either way, so the connection can be reused.
pub fn switch(agent: &ureq::Agent, url: &str) -> crate::swipe::SwitchOutcome {
    use crate::swipe::SwitchOutcome;
    match agent.post(url).call() {
        Ok(r) => {
            let _ = r.into_string();
            SwitchOutcome::Ok
        }
        Err(ureq::Error::Status(code, r)) => {
            let _ = r.into_string();
            SwitchOutcome::Refused(code)
        }
        Err(ureq::Error::Transport(_)) => SwitchOutcome::Failed,
    }
}

/// Best-effort WHEP DELETE at teardown.
pub fn delete(agent: &ureq::Agent, location: &str) {
    let _ = agent.delete(location).call();
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}/{}", location.trim_start_matches('/'))
    }
}

/// Pulls the SDP out of a JSON body whose `code_ptr` must equal `ok`.
fn json_field(body: &str, sdp_ptr: &str, code_ptr: &str, ok: i64) -> Result<String, FailureKind> {
    let v: Value = serde_json::from_str(body).map_err(|_| FailureKind::BadSdp)?;
    match v.pointer(code_ptr).and_then(Value::as_i64) {
        Some(c) if c == ok => {}
        Some(c) if c >= 500 => return Err(FailureKind::Http5xx),
        Some(_) => return Err(FailureKind::Http4xx),
        None => {}
    }
    v.pointer(sdp_ptr).and_then(Value::as_str).map(str::to_string).ok_or(FailureKind::BadSdp)
}

/// Reads candidate, ICE credentials, fingerprint and H.264 PT from the answer.
pub fn parse_answer(sdp: &str) -> Result<Remote, FailureKind> {
    let d = SessionDescription::parse(sdp).map_err(|_| FailureKind::BadSdp)?;
    let udp = |c: &&rts_sdp::Candidate| c.component == 1 && c.transport.eq_ignore_ascii_case("udp");
    // All candidates are in the answer (we take no trickled ones): the best IPv4 one, else the best.
    let best = |v4: bool| d.candidates.iter().filter(udp).filter(|c| !v4 || c.address.is_ipv4()).max_by_key(|c| c.priority);
    let cand = best(true).or_else(|| best(false)).ok_or(FailureKind::BadSdp)?;
    let cand6 = d.candidates.iter().filter(udp).filter(|c| c.address.is_ipv6()).max_by_key(|c| c.priority);
    // The DTLS export gives the peer's sha-256 fingerprint: take that line
    // among those the answer lists (aiortc adds sha-384 and sha-512).
    let fingerprint = d
        .fingerprints_for(0)
        .iter()
        .find(|f| f.algorithm == "sha-256")
        .map(|f| f.value.clone())
        .ok_or(FailureKind::BadSdp)?;
    let live = |kind| d.media.iter().filter(move |m| m.kind == kind && m.port != 0);
    let codec = |kind, name: &'static str| {
        live(kind).flat_map(|m| m.codecs.iter()).find(move |c| c.name.eq_ignore_ascii_case(name))
    };
    let h264_pt = codec(rts_sdp::MediaKind::Video, "H264").map(|c| c.payload_type);
    let playout_delay_id = live(rts_sdp::MediaKind::Video).find_map(|m| m.extmap_ids(rts_sdp::PLAYOUT_DELAY_URI).next());
    let rtx_pt = live(rts_sdp::MediaKind::Video)
        .flat_map(|m| m.codecs.iter())
        .find(|c| c.name.eq_ignore_ascii_case("rtx") && h264_pt.is_some() && c.apt == h264_pt)
        .map(|c| c.payload_type);
    let opus_pt = codec(rts_sdp::MediaKind::Audio, "opus").map(|c| c.payload_type);
    let red_pt = codec(rts_sdp::MediaKind::Audio, "red").map(|c| c.payload_type);
    let fid = fid_group(sdp);
    let video_ssrc = fid.map(|(v, _)| v).or_else(|| live(rts_sdp::MediaKind::Video).find_map(|m| m.ssrcs.first().copied()));
    Ok(Remote {
        addr: SocketAddr::new(cand.address, cand.port),
        addr6: cand6.map(|c| SocketAddr::new(c.address, c.port)),
        ufrag: d.ice_ufrag_for(0).ok_or(FailureKind::BadSdp)?.to_string(),
        pwd: d.ice_pwd_for(0).ok_or(FailureKind::BadSdp)?.to_string(),
        fingerprint: fingerprint.to_ascii_uppercase(),
        h264_pt,
        playout_delay_id,
        video_ssrc,
        rtx_pt,
        rtx_ssrc: fid.map(|(_, r)| r).filter(|_| rtx_pt.is_some()),
        opus_pt,
        red_pt,
        location: None,
        dtls_server: d.setup_for(0) == Some(rts_sdp::Setup::Active),
        ice_lite: d.ice_lite,
    })
}

/// The first `a=ssrc-group:FID <media> <rtx>` of the answer (the parser
/// keeps SSRCs, not their groups): RFC 4588's pairing of the video SSRC
/// with its RTX SSRC.
fn fid_group(sdp: &str) -> Option<(u32, u32)> {
    sdp.lines().find_map(|l| {
        let mut it = l.trim().strip_prefix("a=ssrc-group:FID ")?.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    })
}

fn classify_http_error(e: &ureq::Error) -> FailureKind {
    match e {
        ureq::Error::Status(code, _) if *code >= 500 => FailureKind::Http5xx,
        ureq::Error::Status(..) => FailureKind::Http4xx,
        ureq::Error::Transport(t) => {
            let text = t.to_string().to_ascii_lowercase();
            if text.contains("timed out") || text.contains("timeout") {
                FailureKind::SignalingTimeout
            } else {
                FailureKind::ConnectError
            }
        }
    }
}

fn classify_io(e: &std::io::Error) -> FailureKind {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => FailureKind::SignalingTimeout,
        _ => FailureKind::ConnectError,
    }
}

/// Server-added delay from the rts admin API, if the target is an rts server.
pub fn server_latency(agent: &ureq::Agent, t: &Target) -> Option<crate::ServerLatency> {
    let body = agent.get(&format!("{}/api/v1/streams", t.base)).call().ok()?.into_string().ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let s = v["streams"].as_array()?.iter().find(|s| s["app"] == t.app.as_str() && s["stream"] == t.stream.as_str())?;
    // Latency is measured where viewers are served: the shard (home or
    // replica) with the most samples.
    let per_shard = s["per_shard"].as_array().into_iter().flatten();
    let st = per_shard.max_by_key(|r| r["latency_samples"].as_u64().unwrap_or(0)).unwrap_or(&s["stats"]);
    Some(crate::ServerLatency {
        p50: st["latency_us_p50"].as_u64()?,
        p99: st["latency_us_p99"].as_u64()?,
        max: st["latency_us_max"].as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_per_shape() {
        let u = "http://10.0.0.1:8080/whep/live/s?auth_key=k";
        let w = Target::parse(u, Signaling::Whep).unwrap();
        assert_eq!((w.endpoint.as_str(), w.app.as_str(), w.stream.as_str()), (u, "live", "s"));
        let r = Target::parse(u, Signaling::Rts).unwrap();
        assert_eq!(r.endpoint, "http://10.0.0.1:8080/live/s?auth_key=k");
        assert_eq!(r.stream_url(), "webrtc://10.0.0.1/live/s?auth_key=k");
        let s = Target::parse("http://h/whep/a/b", Signaling::Srs).unwrap();
        assert_eq!((s.endpoint.as_str(), s.stream_url().as_str()), ("http://h/rtc/v1/play/", "webrtc://h/a/b"));
        assert!(Target::parse("http://h/", Signaling::Whep).is_err());
        assert!(Target::parse("https://h/a/b", Signaling::Whep).is_err());
    }

    #[test]
    fn answer_fields_and_garbage() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:srv\r\na=ice-pwd:serverpassword0123456789\r\n\
a=fingerprint:sha-256 ab:CD:01\r\na=setup:passive\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
a=candidate:1 1 udp 2130706431 10.200.0.1 40000 typ host\r\n";
        let r = parse_answer(sdp).unwrap();
        assert_eq!(r.addr, "10.200.0.1:40000".parse().unwrap());
        assert_eq!((r.ufrag.as_str(), r.fingerprint.as_str(), r.h264_pt), ("srv", "AB:CD:01", Some(102)));
        assert_eq!(parse_answer("garbage"), Err(FailureKind::BadSdp));
        assert_eq!(parse_answer(&sdp.replace("a=candidate", "a=x")), Err(FailureKind::BadSdp));
        assert!(!r.dtls_server && r.ice_lite);
        assert_eq!(r.playout_delay_id, None);
        let with_ext = sdp.replace(
            "a=rtpmap:102 H264/90000\r\n",
            "a=rtpmap:102 H264/90000\r\na=extmap:5/sendonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n",
        );
        assert_eq!(parse_answer(&with_ext).unwrap().playout_delay_id, Some(5));
        assert_eq!((r.video_ssrc, r.rtx_pt, r.rtx_ssrc, r.opus_pt, r.red_pt), (None, None, None, None, None));
        assert_eq!(json_field("{\"code\":404}", "/sdp", "/code", 0), Err(FailureKind::Http4xx));
        assert_eq!(json_field("<html>", "/sdp", "/code", 0), Err(FailureKind::BadSdp));
        assert_eq!(absolute("http://h:1", "/whep/session/1"), "http://h:1/whep/session/1");
    }

    /// rts's answer to our offer: RTX with its SSRC in a FID group, RED next to Opus.
    #[test]
    fn answer_repair_fields() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0 1\r\n\
m=video 8000 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 10.200.0.1\r\na=ice-ufrag:srv\r\na=ice-pwd:serverpassword0123456789\r\n\
a=fingerprint:sha-256 AB:CD\r\na=setup:passive\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
a=ssrc-group:FID 1111 2222\r\na=ssrc:1111 cname:rts\r\na=ssrc:2222 cname:rts\r\n\
a=candidate:1 1 udp 2130706431 10.200.0.1 8000 typ host\r\n\
m=audio 8000 UDP/TLS/RTP/SAVPF 111 63\r\nc=IN IP4 10.200.0.1\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=ssrc:3333 cname:rts\r\n";
        let r = parse_answer(sdp).unwrap();
        assert_eq!((r.h264_pt, r.rtx_pt, r.video_ssrc, r.rtx_ssrc), (Some(102), Some(103), Some(1111), Some(2222)));
        assert_eq!((r.opus_pt, r.red_pt), (Some(111), Some(63)));
        // RTX for another codec, or no group: video SSRC from a=ssrc, no RTX SSRC.
        let other = parse_answer(&sdp.replace("apt=102", "apt=96")).unwrap();
        assert_eq!((other.rtx_pt, other.rtx_ssrc, other.video_ssrc), (None, None, Some(1111)));
        let no_group = parse_answer(&sdp.replace("a=ssrc-group:FID 1111 2222\r\n", "")).unwrap();
        assert_eq!((no_group.rtx_pt, no_group.rtx_ssrc, no_group.video_ssrc), (Some(103), None, Some(1111)));
    }

    /// A full-ICE answer in aiortc's shape: DTLS client, three fingerprints, two candidates.
    #[test]
    fn full_ice_answer() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=video 40001 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 10.200.0.1\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
a=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n\
a=candidate:1 1 udp 2130706431 10.200.0.1 40001 typ host\r\na=candidate:2 1 udp 2130706175 10.200.0.2 40002 typ host\r\n\
a=candidate:3 1 udp 2130706943 fe80::1 40003 typ host\r\na=end-of-candidates\r\n\
a=ice-ufrag:peer\r\na=ice-pwd:peerpassword0123456789ab\r\n\
a=fingerprint:sha-256 aa:bb\r\na=fingerprint:sha-384 cc:dd\r\na=fingerprint:sha-512 ee:ff\r\na=setup:active\r\n";
        let r = parse_answer(sdp).unwrap();
        assert_eq!(r.addr, "10.200.0.1:40001".parse().unwrap(), "best IPv4 candidate");
        assert_eq!(r.addr6, Some("[fe80::1]:40003".parse().unwrap()), "best IPv6 candidate");
        assert_eq!(r.fingerprint, "AA:BB");
        assert!(r.dtls_server && !r.ice_lite);
        assert_eq!(r.h264_pt, Some(102));
    }
}
