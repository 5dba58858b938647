//! Offer in, answer out: the part every signaling shape (WHEP, SRS
//! `/rtc/v1/*`, Alibaba RTS JSON) shares. Auth, SDP negotiation, shard
//! placement, ICE credentials, and registration with the engine.

use crate::engine::{Engine, EngineError, MediaParams, NewSession, SessionIce};
use crate::ice;
use rts_common::auth::AuthFailure;
use rts_common::ipc;
use rts_sdp::{build_answer, AnswerOptions, SessionDescription};
use std::net::SocketAddr;

pub struct PlayRequest<'a> {
    pub app: &'a str,
    pub stream: &'a str,
    pub auth_key: Option<&'a str>,
    pub offer: &'a str,
    /// The domain the viewer asked for (traffic records).
    pub domain: &'a str,
    /// The signaling request's peer (hooks).
    pub client: Option<SocketAddr>,
}

pub struct PlayAnswer {
    pub session: u64,
    pub sdp: String,
    /// Entity-tag of the session's ICE state (WHEP's `ETag`, without quotes).
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("forbidden: {0}")]
    Forbidden(AuthFailure),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no common codec: {0}")]
    NoCommonCodec(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// `[limits]`: this address has too many sessions or requests.
    #[error("too many requests: {0}")]
    TooMany(String),
    /// The `on_play` hook said no.
    #[error("refused: {0}")]
    Refused(String),
    /// Cluster: this node is full; the viewer goes to this node's
    /// signaling base URL (same path and query).
    #[error("redirected to {0}")]
    Redirect(String),
}

impl PlayError {
    pub fn http_status(&self) -> u16 {
        match self {
            PlayError::Forbidden(_) => 403,
            PlayError::BadRequest(_) => 400,
            PlayError::NoCommonCodec(_) => 406,
            PlayError::Unavailable(_) => 503,
            PlayError::UnknownDomain(_) => 404,
            PlayError::Redirect(_) => 307,
            PlayError::Refused(_) => 403,
            PlayError::TooMany(_) => 429,
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// Checks an app and stream name pair (play, switch): each 1-128
/// characters of `[A-Za-z0-9-_.~]`.
pub(crate) fn check_names(app: &str, stream: &str) -> Result<(), &'static str> {
    if valid_name(app) && valid_name(stream) {
        Ok(())
    } else {
        Err("app and stream must be 1-128 characters of [A-Za-z0-9-_.~]")
    }
}

pub fn play(engine: &Engine, req: PlayRequest<'_>) -> Result<PlayAnswer, PlayError> {
    check_names(req.app, req.stream).map_err(|e| PlayError::BadRequest(e.into()))?;
    let auth = engine.cfg().play_auth_for(req.domain).ok_or_else(|| PlayError::UnknownDomain(req.domain.to_string()))?;
    if let Err(f) = auth.check(req.app, req.stream, None, req.auth_key, rts_common::config::unix_now()) {
        engine.count_auth_failure("play", f.as_str());
        tracing::info!(app = req.app, stream = req.stream, reason = f.as_str(), "play refused");
        return Err(PlayError::Forbidden(f));
    }
    let offer = SessionDescription::parse(req.offer).map_err(|e| PlayError::BadRequest(format!("offer SDP: {e}")))?;
    // BUNDLE: the first section's transport carries every section.
    let first_media = 0;
    let remote_ufrag = offer
        .ice_ufrag_for(first_media)
        .ok_or_else(|| PlayError::BadRequest("offer has no a=ice-ufrag".into()))?
        .to_string();
    let remote_pwd = offer
        .ice_pwd_for(first_media)
        .ok_or_else(|| PlayError::BadRequest("offer has no a=ice-pwd".into()))?
        .to_string();
    ice::check_credentials(&remote_ufrag, &remote_pwd).map_err(PlayError::BadRequest)?;
    let remote_fingerprint = ice::choose_fingerprints(offer.fingerprints_for(first_media)).map_err(PlayError::BadRequest)?;

    // The server's name of the stream: its domain's (decision 021).
    let app_owned = engine.cfg().stream_app(req.domain, req.app).unwrap_or_else(|| req.app.to_string());
    let app = app_owned.as_str();
    if let Some(ip) = req.client.map(|c| c.ip()) {
        let limit = engine.cfg().limits.sessions_per_ip;
        if limit > 0 && engine.sessions_from(ip) >= limit as usize {
            return Err(PlayError::TooMany(format!("{limit} sessions from {ip} already")));
        }
    }
    if engine.draining() && engine.cluster().is_none() {
        return Err(PlayError::Unavailable("server draining".into()));
    }
    if let Some(c) = engine.cluster() {
        match c.steer(engine, app, req.stream) {
            crate::cluster::Steer::Here => {}
            crate::cluster::Steer::Redirect(url) => return Err(PlayError::Redirect(url)),
            crate::cluster::Steer::Full(why) => return Err(PlayError::Unavailable(why)),
        }
        c.want(engine, app, req.stream).map_err(|e| PlayError::Unavailable(e.to_string()))?;
    }
    let (shard, home_shard) = engine.place(app, req.stream);
    let session = ipc::make_session_id(shard, rand::random());
    let cfg = engine.cfg();
    if !cfg.hooks.on_play.is_empty() {
        let call = ipc::HookCall {
            action: "on_play".into(),
            session,
            protocol: ipc::Protocol::Webrtc,
            client: req.client,
            domain: req.domain.into(),
            app: req.app.into(),
            stream: req.stream.into(),
            param: req.auth_key.map(|k| format!("auth_key={k}")).unwrap_or_default(),
        };
        if let crate::hooks::Verdict::Refuse(r) | crate::hooks::Verdict::Failed(r) = engine.hooks.decide(&cfg.hooks, &call, &cfg.node_id()) {
            return Err(PlayError::Refused(r));
        }
    }
    let (local_ufrag, local_pwd, etag) = ice::new_ice_session();
    let port = engine.cfg().udp_port(shard);
    let candidates: Vec<SocketAddr> = engine.cfg().candidate_ips().into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
    let answer = build_answer(
        &offer,
        &AnswerOptions {
            ice_ufrag: local_ufrag.clone(),
            ice_pwd: local_pwd.clone(),
            fingerprint_sha256: engine.fingerprint.clone(),
            candidates: candidates.clone(),
            video_ssrc: ipc::stream_ssrc(app, req.stream, 0),
            video_rtx_ssrc: Some(ipc::stream_ssrc(app, req.stream, 2)),
            audio_ssrc: ipc::stream_ssrc(app, req.stream, 1),
            cname: "rts".into(),
            stream_id: format!("{}-{}", req.app, req.stream),
            session_id: session,
            offer_audio: false,
            playout_delay: engine.cfg().webrtc.playout_delay_hint,
            red: engine.cfg().webrtc.red,
        },
    )
    .map_err(|e| match e {
        rts_sdp::Error::NoCommonCodec => PlayError::NoCommonCodec("offer needs H.264 (packetization-mode=1) video or Opus audio".into()),
        other => PlayError::BadRequest(format!("cannot answer offer: {other}")),
    })?;
    let ice_state = answer.ice_fragment.clone().map(|fragment| SessionIce {
        etag: etag.clone(),
        local_ufrag: local_ufrag.clone(),
        local_pwd: local_pwd.clone(),
        remote_ufrag: remote_ufrag.clone(),
        remote_pwd,
        fragment,
    });
    engine
        .add_session(NewSession {
            session,
            app: app.to_string(),
            stream: req.stream.to_string(),
            domain: req.domain.to_string(),
            local_ufrag,
            local_pwd,
            remote_ufrag,
            remote_fingerprint: Some(remote_fingerprint),
            media: MediaParams {
                video_pt: answer.video.as_ref().map(|c| c.payload_type),
                audio_pt: answer.audio.as_ref().map(|c| c.payload_type),
                video_playout_delay_id: answer.video.as_ref().and_then(|c| c.playout_delay_id),
                video_rtx: answer
                    .video
                    .as_ref()
                    .and_then(|c| c.rtx_payload_type)
                    .map(|pt| (pt, ipc::stream_ssrc(req.app, req.stream, 2))),
                video_nack: answer.video.as_ref().is_some_and(|c| c.nack),
                audio_red_pt: answer.audio.as_ref().and_then(|c| c.red_payload_type),
            },
            home_shard,
            client_ip: req.client.map(|c| c.ip()),
        })
        .map_err(|e| match e {
            EngineError::RingFull(_) | EngineError::NoShard(_) | EngineError::TooLarge(..) => PlayError::Unavailable(e.to_string()),
            EngineError::Dtls(m) => PlayError::Unavailable(m),
        })?;
    if let Some(state) = ice_state {
        engine.set_ice(session, state);
    }
    tracing::info!(session = format_args!("{session:016x}"), app = req.app, stream = req.stream, shard, candidates = ?candidates, "play session created");
    Ok(PlayAnswer { session, sdp: answer.sdp, etag })
}

pub use rts_common::signaling_body::parse_stream_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("live"));
        assert!(valid_name("s-1_2.x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a b"));
    }
}
