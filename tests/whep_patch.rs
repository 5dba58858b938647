//! WHEP `PATCH` on a session (issue 17, defect 3), as RFC 9725 §4.3 (which
//! the WHEP draft follows) has it: trickled candidates are accepted with
//! 204, an ICE restart gets new credentials and ETag with 200 and the same
//! media keeps flowing, and every refusal has the status the specification
//! (or HTTP) names for it.

mod common;
mod rig;

use anyhow::{bail, ensure, Context, Result};
use common::PEER_IP;
use rig::{Mode, Rig, HTTP};
use rts_dtls::{DtlsCert, DtlsContext, DtlsEndpoint, DtlsEvent, Role};
use rts_sdp::SessionDescription;
use rts_srtp::{KeyingMaterial, Profile, SrtpContext};
use rts_stun::{BindingRequest, Class, PacketKind, StunMessage};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const OFFER: &str = include_str!("../proto/sdp/tests/fixtures/chrome_av_datachannel_recvonly.sdp");
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

struct Resp {
    status: u16,
    etag: Option<String>,
    content_type: Option<String>,
    location: Option<String>,
    body: String,
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Result<Resp> {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match req.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let header = |n: &str| r.header(n).map(str::to_string);
    let (etag, content_type, location) = (header("ETag"), header("Content-Type"), header("Location"));
    Ok(Resp { status: r.status(), etag, content_type, location, body: r.into_string()? })
}

fn patch(session_url: &str, content_type: Option<&str>, if_match: Option<&str>, body: &str) -> Result<Resp> {
    let mut h = Vec::new();
    if let Some(ct) = content_type {
        h.push(("Content-Type", ct));
    }
    if let Some(m) = if_match {
        h.push(("If-Match", m));
    }
    request("PATCH", session_url, &h, body)
}

/// A trickle fragment with credentials `ufrag` / `pwd` (RFC 9725 §4.3.4's shape).
fn trickle(ufrag: &str, pwd: &str) -> String {
    format!(
        "a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n\
         a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag {ufrag} network-id 1\r\n\
         a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag {ufrag} network-id 1\r\n\
         a=candidate:3497579180 1 udp 2122260223 5e0cbb38-0f12-4bd4-9a5e-3c4f6a2d0e71.local 54400 typ host\r\n\
         a=end-of-candidates\r\n"
    )
}

/// An ICE restart fragment with new credentials (RFC 9725 §4.3.5's shape).
fn restart(ufrag: &str, pwd: &str) -> String {
    format!(
        "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n\
         a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag {ufrag} network-id 1\r\n"
    )
}

fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

#[test]
fn patch_follows_rfc_9725() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let post = request("POST", &format!("{HTTP}/whep/live/p"), &[("Content-Type", "application/sdp")], OFFER)?;
    ensure!(post.status == 201, "POST: {} {}", post.status, post.body);
    let etag0 = post.etag.clone().context("201 without ETag (RFC 9725 §4.3.1)")?;
    ensure!(etag0.len() > 2 && etag0.starts_with('"') && etag0.ends_with('"'), "not a strong entity-tag: {etag0}");
    let url = format!("{HTTP}{}", post.location.clone().context("no Location")?);
    let answer = SessionDescription::parse(&post.body)?;
    let (u, p) = ("EsAw", "bP+XJMM09aR8AiX1jdukzR6Y"); // the offer's credentials

    // --- Unknown sessions: 404, whatever the body.
    let unknown = format!("{HTTP}/whep/session/{:016x}", 0x0000_1234_5678_9abcu64);
    for u in [unknown.as_str(), &format!("{HTTP}/whep/session/not-hex")] {
        assert_eq!(patch(u, Some(SDPFRAG), Some(&etag0), &trickle("EsAw", p))?.status, 404, "{u}");
    }
    // --- Content types other than trickle-ice-sdpfrag: 415.
    for ct in [Some("application/sdp"), Some("text/plain"), None] {
        assert_eq!(patch(&url, ct, Some(&etag0), &trickle(u, p))?.status, 415, "{ct:?}");
    }
    // --- If-Match missing: 428; another tag: 412; not an entity-tag: 400.
    assert_eq!(patch(&url, Some(SDPFRAG), None, &trickle(u, p))?.status, 428);
    assert_eq!(patch(&url, Some(SDPFRAG), Some("\"not-the-tag\""), &trickle(u, p))?.status, 412);
    assert_eq!(patch(&url, Some(SDPFRAG), Some(&format!("W/{etag0}")), &trickle(u, p))?.status, 412, "weak tags never match");
    assert_eq!(patch(&url, Some(SDPFRAG), Some("no-quotes"), &trickle(u, p))?.status, 400);
    // --- Malformed fragments: 400 with a reason.
    for body in [
        String::new(),
        "this is not SDP".to_string(),
        format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\na=candidate:1 1 udp 5 192.0.2.1 notaport typ host\r\n"),
        format!("a=ice-ufrag:{u}\r\n"),
        format!("a=ice-ufrag:{}\r\na=ice-pwd:{p}\r\n", "x".repeat(5000)),
    ] {
        let r = patch(&url, Some(SDPFRAG), Some(&etag0), &body)?;
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        assert!(r.body.contains("\"error\""), "{}", r.body);
    }

    // --- Trickle for the current ICE session: 204, no body, no ETag. The
    // tcp and mDNS candidates are discarded silently.
    for ct in [SDPFRAG, "application/trickle-ice-sdpfrag; charset=utf-8"] {
        let r = patch(&url, Some(ct), Some(&etag0), &trickle(u, p))?;
        assert_eq!((r.status, r.etag.as_deref(), r.body.as_str()), (204, None, ""), "{ct}");
    }
    let r = patch(&url, Some(SDPFRAG), Some(&format!("\"other\", {etag0}")), &format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\na=end-of-candidates\r\n"))?;
    assert_eq!(r.status, 204, "a list holding the current tag matches");

    // --- ICE restart: 200, our new credentials in an sdpfrag, a new ETag.
    let (u2, p2) = ("ysXw", "vw5LmwG4y/e6dPP/zAP9Gp5k");
    let r = patch(&url, Some(SDPFRAG), Some("*"), &restart(u2, p2))?;
    ensure!(r.status == 200, "restart: {} {}", r.status, r.body);
    assert_eq!(r.content_type.as_deref(), Some(SDPFRAG));
    let etag1 = r.etag.clone().context("restart without ETag")?;
    assert_ne!(etag1, etag0);
    let frag = SessionDescription::parse_fragment(&r.body)?;
    assert!(frag.ice_lite, "same ice-lite as the answer: {}", r.body);
    assert_eq!(frag.bundle_mids, answer.bundle_mids);
    assert_eq!(frag.media.len(), 1, "only the BUNDLE-tag m-line: {}", r.body);
    assert_eq!(frag.media[0].mid, answer.media[0].mid);
    assert_ne!(frag.ice_ufrag_for(0), answer.ice_ufrag_for(0), "new ufrag");
    assert_ne!(frag.ice_pwd_for(0), answer.ice_pwd_for(0), "new pwd");
    assert_eq!(frag.candidates, answer.media[0].candidates, "the same host candidate");
    assert!(r.body.contains("a=end-of-candidates"));

    // The old tag is stale now, for trickle and restart alike; the session
    // keeps its state after a refused restart.
    assert_eq!(patch(&url, Some(SDPFRAG), Some(&etag0), &trickle(u2, p2))?.status, 412);
    assert_eq!(patch(&url, Some(SDPFRAG), Some(&etag0), &restart("abcd", "abcdefghijklmnopqrstuvwx"))?.status, 412);
    let r = patch(&url, Some(SDPFRAG), Some(&etag1), &trickle(u2, p2))?;
    assert_eq!((r.status, r.etag), (204, None), "trickle under the new tag and credentials");
    // A second restart under the current tag (not only *) works too.
    let r = patch(&url, Some(SDPFRAG), Some(&etag1), &restart("zzzz", "abcdefghijklmnopqrstuvwx"))?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(unquote(r.etag.as_deref().unwrap_or_default()), unquote(&etag1));

    // --- Other methods on the session: 405; after DELETE: 404.
    assert_eq!(request("PUT", &url, &[], "")?.status, 405);
    assert_eq!(request("DELETE", &url, &[], "")?.status, 200);
    assert_eq!(patch(&url, Some(SDPFRAG), Some("*"), &trickle("zzzz", "abcdefghijklmnopqrstuvwx"))?.status, 404);
    drop(rig);
    Ok(())
}

/// A STUN response: (transaction id, success).
type StunAnswer = ([u8; 12], bool);

/// A one-session WebRTC viewer over real sockets: ICE checks (rts-stun),
/// the DTLS client (rts-dtls) and SRTP (rts-srtp), enough to watch media
/// arrive and to restart ICE from a new address.
struct Viewer {
    sock: UdpSocket,
    server: SocketAddr,
    dtls: DtlsEndpoint,
    rx: Option<SrtpContext>,
    ufrag: String,
    pwd: String,
    server_ufrag: String,
    server_pwd: String,
    tid: u8,
}

impl Viewer {
    fn bind() -> Result<UdpSocket> {
        let s = UdpSocket::bind(SocketAddr::from((PEER_IP, 0)))?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(s)
    }

    /// Sends a nominating check with the current credentials from `sock`.
    fn check(&mut self) -> Result<[u8; 12]> {
        let (u, p) = (self.server_ufrag.clone(), self.server_pwd.clone());
        self.check_as(&u, &p)
    }

    /// Sends a nominating check for the server credentials `server_ufrag` / `server_pwd`.
    fn check_as(&mut self, server_ufrag: &str, server_pwd: &str) -> Result<[u8; 12]> {
        self.tid = self.tid.wrapping_add(1);
        let tid = [self.tid; 12];
        let username = format!("{server_ufrag}:{}", self.ufrag);
        let req = BindingRequest { transaction_id: tid, username: &username, priority: 1, controlling: Some(1), use_candidate: true };
        let mut buf = [0u8; 512];
        let n = rts_stun::write_binding_request(&req, server_pwd.as_bytes(), &mut buf)?;
        self.sock.send_to(&buf[..n], self.server)?;
        Ok(tid)
    }

    /// Reads datagrams until `deadline`: DTLS goes to the endpoint, SRTP is
    /// decrypted and counted, STUN responses are returned as (transaction
    /// id, success). Returns (decrypted RTP packets, STUN responses).
    fn pump(&mut self, deadline: Instant) -> Result<(usize, Vec<StunAnswer>)> {
        let (mut rtp, mut stun) = (0, Vec::new());
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            while let Some(d) = self.dtls.poll_datagram() {
                self.sock.send_to(&d, self.server)?;
            }
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {
                    let _ = self.dtls.handle_timeout(Instant::now());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let d = &mut buf[..n];
            match rts_stun::classify(d) {
                PacketKind::Stun => {
                    let m = StunMessage::parse(d)?;
                    stun.push((m.transaction_id, m.class == Class::SuccessResponse));
                }
                PacketKind::Dtls => {
                    let _ = self.dtls.handle_datagram(d, Instant::now());
                    while let Some(ev) = self.dtls.poll_event() {
                        match ev {
                            DtlsEvent::Connected(e) => {
                                let p = Profile::from_dtls_id(e.profile_id).context("SRTP profile")?;
                                let k = KeyingMaterial::from_exported(p, &e.material, false)?;
                                self.rx = Some(SrtpContext::new(p, &k.remote_key, &k.remote_salt)?);
                            }
                            other => bail!("DTLS: {other:?}"),
                        }
                    }
                }
                PacketKind::Rtp if self.rx.as_mut().is_some_and(|rx| rx.unprotect_rtp(d).is_ok()) => rtp += 1,
                _ => {}
            }
        }
        Ok((rtp, stun))
    }

    fn answered(stun: &[StunAnswer], tid: [u8; 12]) -> Option<bool> {
        stun.iter().find(|(t, _)| *t == tid).map(|(_, ok)| *ok)
    }
}

/// A viewer playing `app/stream` from `rig` (ICE, DTLS, more than 20 RTP
/// packets decrypted), its session URL and the 201's ETag.
fn play(rig: &Rig, path: &str, ctx: &DtlsContext, cert: &DtlsCert) -> Result<(Viewer, String, String)> {
    let (ufrag, pwd) = ("vwr1".to_string(), "viewerpassword0123456789".to_string());
    let offer = rts_sdp::build_recvonly_offer(&rts_sdp::OfferOptions {
        ice_ufrag: ufrag.clone(),
        ice_pwd: pwd.clone(),
        fingerprint_sha256: cert.fingerprint_sha256(),
        video: true,
        audio: false,
    });
    let post = request("POST", &format!("{HTTP}/whep/{path}"), &[("Content-Type", "application/sdp")], &offer)?;
    ensure!(post.status == 201, "POST: {} {}", post.status, post.body);
    let url = format!("{HTTP}{}", post.location.clone().context("no Location")?);
    let etag = post.etag.clone().context("no ETag")?;
    let answer = SessionDescription::parse(&post.body)?;
    let cand = answer.candidates.first().context("no candidate")?;
    let mut v = Viewer {
        sock: Viewer::bind()?,
        server: SocketAddr::new(cand.address, cand.port),
        dtls: DtlsEndpoint::new(ctx)?,
        rx: None,
        ufrag,
        pwd,
        server_ufrag: answer.ice_ufrag_for(0).context("no ufrag")?.to_string(),
        server_pwd: answer.ice_pwd_for(0).context("no pwd")?.to_string(),
        tid: 0,
    };
    // Checks go out every 100 ms until one is answered, as an ICE agent
    // retransmits them: the shard may get the session a moment after the 201.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let tid = v.check()?;
        let (_, stun) = v.pump(Instant::now() + Duration::from_millis(100))?;
        if Viewer::answered(&stun, tid) == Some(true) {
            break;
        }
        ensure!(Instant::now() < end, "no check answered\n{}", rig.logs());
    }
    v.dtls.start(Instant::now())?;
    let (packets, _) = v.pump(Instant::now() + Duration::from_secs(3))?;
    ensure!(v.rx.is_some() && packets > 20, "{packets} RTP packets\n{}", rig.logs());
    Ok((v, url, etag))
}

#[test]
fn ice_restart_keeps_the_media_and_moves_it_to_the_new_address() -> Result<()> {
    let rig = Rig::start(Mode::Serve, "")?;
    let _publisher = rig.publish("live/r")?;
    rig.wait_live("live", "r", Duration::from_secs(20))?;
    let cert = DtlsCert::generate()?;
    let ctx = DtlsContext::new(&cert, Role::Client)?;
    // ICE, DTLS, media at the first address.
    let (mut v, url, _) = play(&rig, "live/r", &ctx, &cert)?;
    let ctx_logs = |what: &str| format!("{what}\n{}", rig.logs());

    // ICE restart.
    let (old_server_ufrag, old_server_pwd) = (v.server_ufrag.clone(), v.server_pwd.clone());
    v.ufrag = "vwr2".into();
    v.pwd = "viewerpassword9876543210".into();
    let body = format!("m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", v.ufrag, v.pwd);
    let r = patch(&url, Some(SDPFRAG), Some("*"), &body)?;
    ensure!(r.status == 200, "restart: {} {}", r.status, r.body);
    let frag = SessionDescription::parse_fragment(&r.body)?;
    v.server_ufrag = frag.ice_ufrag_for(0).context("no ufrag")?.to_string();
    v.server_pwd = frag.ice_pwd_for(0).context("no pwd")?.to_string();
    assert_ne!(v.server_ufrag, old_server_ufrag);

    // Media goes on at the old address until a check nominates another; a
    // check with the old credentials is no longer answered.
    let stale = v.check_as(&old_server_ufrag, &old_server_pwd)?;
    let (during, stun) = v.pump(Instant::now() + Duration::from_secs(1))?;
    assert!(during > 5, "{}", ctx_logs(&format!("media stopped after the restart: {during} packets")));
    assert_eq!(Viewer::answered(&stun, stale), None, "a check with the old credentials was answered");

    // The network changes: a new socket checks with the new credentials,
    // is answered, and the same SRTP session arrives there.
    v.sock = Viewer::bind()?;
    let fresh = v.check()?;
    let (after, stun) = v.pump(Instant::now() + Duration::from_secs(2))?;
    assert_eq!(Viewer::answered(&stun, fresh), Some(true), "{}", ctx_logs("check with the new credentials"));
    assert!(after > 20, "{}", ctx_logs(&format!("{after} RTP packets at the new address")));
    let sessions = ureq::get(&format!("{HTTP}/api/v1/sessions")).call()?.into_string()?;
    let sessions: serde_json::Value = serde_json::from_str(&sessions)?;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1), "still the one session: {sessions}");
    Ok(())
}

/// A control restarted under a running dataplane adopts playing sessions
/// without their ICE state: PATCH says so instead of pretending.
#[test]
fn a_session_adopted_after_a_control_restart_refuses_patch_clearly() -> Result<()> {
    let mut rig = Rig::start(Mode::Split, "")?;
    let _publisher = rig.publish("live/c")?;
    rig.wait_live("live", "c", Duration::from_secs(20))?;
    let cert = DtlsCert::generate()?;
    let ctx = DtlsContext::new(&cert, Role::Client)?;
    let (mut v, url, etag) = play(&rig, "live/c", &ctx, &cert)?;
    rig.servers[1].kill();
    rig.start_control()?;
    // The new control adopts the session from the shard's list.
    let end = Instant::now() + Duration::from_secs(10);
    while patch(&url, Some(SDPFRAG), Some("*"), &trickle("vwr1", "viewerpassword0123456789"))?.status == 404 {
        ensure!(Instant::now() < end, "session not adopted\n{}", rig.logs());
        v.pump(Instant::now() + Duration::from_millis(100))?;
    }
    let body = restart("vwr3", "viewerpassword0000000000");
    let r = patch(&url, Some(SDPFRAG), Some("*"), &body)?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("control restart"), "{}", r.body);
    assert_eq!(patch(&url, Some(SDPFRAG), Some(&etag), &body)?.status, 412, "its old tag is unknown to this control");
    // Media was never interrupted and the old credentials still hold.
    let check = v.check()?;
    let (packets, stun) = v.pump(Instant::now() + Duration::from_secs(1))?;
    assert_eq!(Viewer::answered(&stun, check), Some(true));
    assert!(packets > 5, "{packets} packets after the control restart");
    Ok(())
}
