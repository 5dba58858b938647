//! HTTP API (DESIGN.md §3): WHEP, SRS `/rtc/v1/*`, Alibaba RTS JSON, the
//! web player, `/api/v1/streams` and `/metrics`.

use crate::engine::{Engine, RestartError};
use crate::ice::{self, IfMatch, Patch};
use crate::signaling::{self, PlayError, PlayRequest};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Offers are a few KB; anything much larger is not an SDP offer.
const MAX_BODY: usize = 64 * 1024;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/whep/{app}/{stream}", post(whep_post))
        .route("/whep/session/{id}", axum::routing::delete(whep_delete).patch(whep_patch))
        .route("/whep/session/{id}/switch", post(whep_switch))
        .route("/rtc/v1/play/", post(srs_play))
        .route("/rtc/v1/play", post(srs_play))
        .route("/rtc/v1/whep/", post(srs_whep))
        .route("/rtc/v1/whep", post(srs_whep))
        .route("/api/v1/streams", get(api_streams))
        .route("/api/v1/sessions", get(api_sessions))
        .route("/metrics", get(metrics))
        .route("/play/{app}/{stream}", get(crate::player::page))
        .route("/feed", get(crate::player::feed))
        .route("/player.js", get(crate::player::player_js))
        .route("/player/hls.min.js", get(crate::player::hls_js))
        .route("/{app}/{stream}", post(rts_play))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(engine.clone(), limit_signaling))
        .layer(axum::middleware::from_fn_with_state(engine.clone(), access_log))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any)
                .expose_headers([header::LOCATION, header::ETAG]),
        )
        .layer(axum::middleware::from_fn(canonical_peer))
        .with_state(engine)
}

/// The listeners are dual-stack: an IPv4 client arrives as a v4-mapped
/// IPv6 address. The outermost layer turns it back into IPv4 for
/// everything after it (limits per address, hooks, logs, sessions).
async fn canonical_peer(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(c) = req.extensions_mut().get_mut::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        c.0 = rts_common::net::canonical(c.0);
    }
    next.run(req).await
}

fn json_error(status: u16, msg: &str, reason: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({ "code": status, "error": msg, "msg": msg });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn play_error(e: &PlayError) -> Response {
    let reason = match e {
        PlayError::Forbidden(f) => Some(f.as_str()),
        _ => None,
    };
    let mut resp = json_error(e.http_status(), &e.to_string(), reason);
    if matches!(e, PlayError::Unavailable(_)) {
        // Draining, full, a directory outage: worth trying again shortly.
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

fn json_ok(body: serde_json::Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Runs the shared offer -> answer path off the async executor (SDP work and
/// a DTLS endpoint per session) and turns its errors into HTTP responses.
/// The peer of a signaling request, when the server records it (it does:
/// `lib.rs` serves with connect info).
type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

async fn play(engine: Arc<Engine>, uri: Uri, peer: Peer, (app, stream): (String, String), auth_key: Option<String>, offer: String, domain: String) -> Result<signaling::PlayAnswer, Response> {
    let client = peer.map(|p| p.0 .0);
    let res = tokio::task::spawn_blocking(move || {
        signaling::play(&engine, PlayRequest { app: &app, stream: &stream, auth_key: auth_key.as_deref(), offer: &offer, domain: &domain, client })
    })
    .await;
    match res {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(PlayError::Redirect(base))) => Err(redirect(&base, &uri)),
        Ok(Err(e)) => Err(play_error(&e)),
        Err(_) => Err(json_error(500, "internal error", None)),
    }
}

/// The access log (`[log] access`): one line per request on the public
/// listener, target `access`: who asked for what, the answer, how long.
/// An `auth_key` value never reaches the log.
async fn access_log(State(engine): State<Arc<Engine>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !engine.cfg().log.access {
        return next.run(req).await;
    }
    let started = std::time::Instant::now();
    let client = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map_or_else(String::new, |c| c.0.to_string());
    let method = req.method().clone();
    let host = host_domain(req.headers());
    let path = redact_query(req.uri().path_and_query().map_or("/", |p| p.as_str()));
    let resp = next.run(req).await;
    tracing::info!(target: "access", client, %method, host, path, status = resp.status().as_u16(),
        ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0), "request");
    resp
}

/// `path?query` with the value of every `auth_key` replaced by `***`.
fn redact_query(pq: &str) -> String {
    let Some((path, query)) = pq.split_once('?') else { return pq.to_string() };
    let parts: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k == "auth_key" => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

/// `[limits] signaling_per_ip_per_s`: a client address over its rate gets
/// 429 with Retry-After before anything else is done for it.
async fn limit_signaling(State(engine): State<Arc<Engine>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let ip = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = ip {
        if !engine.signaling_limit.allow(ip, engine.cfg().limits.signaling_per_ip_per_s, std::time::Instant::now()) {
            engine.count_rate_limited();
            let mut resp = json_error(429, "too many requests from this address", None);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
    }
    next.run(req).await
}

/// Cluster steering: 307 (the client repeats the POST with its body) to
/// the same path and query on another node; JSON clients also get the URL
/// in the body's `redirect`.
fn redirect(base: &str, uri: &Uri) -> Response {
    let target = format!("{base}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    let body = json!({ "code": 307, "msg": "redirected", "redirect": target });
    let mut resp = (StatusCode::TEMPORARY_REDIRECT, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The domain a request asked for: its Host header.
fn host_domain(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(rts_common::config::host_of).unwrap_or_default()
}

fn session_hex(id: u64) -> String {
    format!("{id:016x}")
}

async fn whep_post(
    State(engine): State<Arc<Engine>>,
    Path((app, stream)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if !ct.to_ascii_lowercase().starts_with("application/sdp") {
            return json_error(415, "WHEP offers must be application/sdp", None);
        }
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return json_error(400, "offer is not UTF-8", None);
    };
    let domain = host_domain(&headers);
    match play(engine, uri, peer, (app, stream), q.get("auth_key").cloned(), offer.to_string(), domain).await {
        Ok(a) => {
            let location = format!("/whep/session/{}", session_hex(a.session));
            let mut resp = (StatusCode::CREATED, a.sdp).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            // The ICE session's entity-tag, for PATCH's If-Match (RFC 9725 §4.3.1).
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", a.etag)) {
                h.insert(header::ETAG, v);
            }
            resp
        }
        Err(resp) => resp,
    }
}

async fn whep_delete(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> Response {
    let Ok(session) = u64::from_str_radix(&id, 16) else {
        return json_error(404, "no such session", None);
    };
    if engine.was_cut(session) {
        return json_error(404, "no such session (cut by the operator)", None);
    }
    if rts_common::ipc::session_shard(session) >= engine.shard_count() {
        return json_error(404, "no such session", None);
    }
    match engine.remove_session(session, "WHEP DELETE") {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => json_error(503, &e.to_string(), None),
    }
}

/// Channel switch: `POST /whep/session/{id}/switch?stream=app/stream` (or
/// `?app=..&stream=..`). The session keeps its ICE/DTLS/SRTP state and its
/// SSRCs; the shard re-bases sequence numbers and timestamps and starts it
/// from the new stream's GOP cache. Play auth applies to the new stream.
async fn whep_switch(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Ok(session) = u64::from_str_radix(&id, 16) else {
        return json_error(404, "no such session", None);
    };
    if engine.was_cut(session) {
        return json_error(404, "no such session (cut by the operator)", None);
    }
    let (app, stream) = match (q.get("app"), q.get("stream")) {
        (Some(a), Some(s)) => (a.clone(), s.clone()),
        (None, Some(s)) => match s.split_once('/') {
            Some((a, s)) => (a.to_string(), s.to_string()),
            None => return json_error(400, "stream must be app/stream (or pass app=)", None),
        },
        _ => return json_error(400, "missing stream", None),
    };
    if let Err(e) = crate::signaling::check_names(&app, &stream) {
        return json_error(400, e, None);
    }
    let domain = host_domain(&headers);
    let Some(auth) = engine.cfg().play_auth_for(&domain) else {
        return json_error(404, "unknown domain", None);
    };
    if let Err(f) = auth.check(&app, &stream, None, q.get("auth_key").map(String::as_str), rts_common::config::unix_now()) {
        engine.count_auth_failure("play", f.as_str());
        return json_error(403, &format!("forbidden: {f}"), Some(f.as_str()));
    }
    // The stream of the same name on the viewer's domain (decision 021).
    let app = engine.cfg().stream_app(&domain, &app).unwrap_or(app);
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || engine.switch_stream(session, &app, &stream)).await;
    match res {
        Ok(Ok(())) => json_ok(json!({ "code": 200, "msg": "switched", "switch_ms": started.elapsed().as_secs_f64() * 1000.0 })),
        Ok(Err(e)) => json_error(409, &e, None),
        Err(_) => json_error(500, "internal error", None),
    }
}

/// `PATCH` on a WHEP session (RFC 9725 §4.3, which the WHEP draft
/// follows), body `application/trickle-ice-sdpfrag`:
/// - candidates for the current ICE session (trickle ICE): 204, no body,
///   no ETag. They are read (a malformed one is a 400) and not used: rts is
///   ICE-lite and never sends checks, it answers the viewer's checks and
///   learns the viewer's address from them (RFC 8445 §2.5), so remote
///   candidates change nothing.
/// - new ice-ufrag/ice-pwd (ICE restart): new local credentials for the
///   same session and media, answered 200 with our fragment and a new
///   ETag once the shard accepts checks with them.
///
/// The `If-Match` precondition is required (428 without it) and compared
/// with the session's current entity-tag (412 when it differs; `*` holds
/// for any, as a restart sends it). Unknown session 404, other content
/// types 415, malformed fragment 400.
async fn whep_patch(State(engine): State<Arc<Engine>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(session) = u64::from_str_radix(&id, 16).ok().filter(|s| rts_common::ipc::session_shard(*s) < engine.shard_count()) else {
        return json_error(404, "no such session", None);
    };
    let Some(ice_state) = engine.session_ice(session) else {
        return json_error(404, "no such session", None);
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case(ice::SDPFRAG) {
        // application/sdp is the WHEP draft's answer to a counter-offer;
        // rts never sends counter-offers, so it has no use here either.
        return json_error(415, &format!("PATCH bodies must be {}", ice::SDPFRAG), None);
    }
    let Ok(if_match_values) = headers.get_all(header::IF_MATCH).iter().map(|v| v.to_str()).collect::<Result<Vec<&str>, _>>() else {
        return json_error(400, "If-Match is not visible ASCII", None);
    };
    let if_match = match IfMatch::parse(if_match_values) {
        Ok(Some(m)) => m,
        Ok(None) => return json_error(428, "PATCH needs If-Match: the session's ETag, or * for an ICE restart", None),
        Err(e) => return json_error(400, &e, None),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return json_error(400, "SDP fragment is not UTF-8", None);
    };
    let Some(current) = ice_state else {
        // Adopted after a control restart: control has neither the entity-tag
        // nor the viewer's credentials to tell trickle from restart.
        if !if_match.holds(None) {
            return json_error(412, &RestartError::PreconditionFailed.to_string(), None);
        }
        return json_error(409, &RestartError::NoIceState.to_string(), None);
    };
    let patch = match ice::read_patch(body, &current.remote_ufrag, &current.remote_pwd) {
        Ok(p) => p,
        Err(e) => return json_error(400, &e, None),
    };
    match patch {
        Patch::Trickle { candidates, udp } => {
            if !if_match.holds(Some(&current.etag)) {
                return json_error(412, &RestartError::PreconditionFailed.to_string(), None);
            }
            tracing::debug!(session = format_args!("{session:016x}"), candidates, udp, "trickled candidates (unused: ICE-lite)");
            StatusCode::NO_CONTENT.into_response()
        }
        Patch::Restart { ufrag, pwd } => {
            let res = tokio::task::spawn_blocking(move || engine.restart_ice(session, &if_match, ufrag, pwd)).await;
            match res {
                Ok(Ok(new)) => {
                    tracing::info!(session = format_args!("{session:016x}"), "ICE restart");
                    let mut resp = (StatusCode::OK, new.fragment.write(&new.local_ufrag, &new.local_pwd)).into_response();
                    let h = resp.headers_mut();
                    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ice::SDPFRAG));
                    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", new.etag)) {
                        h.insert(header::ETAG, v);
                    }
                    resp
                }
                Ok(Err(e)) => {
                    let status = match e {
                        RestartError::NoSession => 404,
                        RestartError::PreconditionFailed => 412,
                        RestartError::NoIceState => 409,
                        RestartError::Unavailable(_) => 503,
                    };
                    json_error(status, &e.to_string(), None)
                }
                Err(_) => json_error(500, "internal error", None),
            }
        }
    }
}

/// Alibaba RTS signaling: `POST /{app}/{stream}?auth_key=...` with
/// `{version, sdk_version, streamurl, jsep: {type, sdp}}`.
async fn rts_play(
    State(engine): State<Arc<Engine>>,
    Path((app, stream)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let o = match rts_common::signaling_body::rts_offer(&body) {
        Ok(o) => o,
        Err(e) => return json_error(400, e, None),
    };
    // auth_key from the request URL, else from streamurl's query;
    // artc://domain/... names the domain, else the Host it was posted to.
    let auth_key = q.get("auth_key").cloned().or(o.auth_key);
    let domain = Some(o.domain).filter(|d| !d.is_empty()).unwrap_or_else(|| host_domain(&headers));
    let offer = o.sdp;
    if let rts_common::config::DomainMatch::Domain(d) = engine.cfg().domain(&domain) {
        if !d.rts {
            return json_error(404, "RTS signaling is off for this domain", None);
        }
    }
    match play(engine, uri, peer, (app, stream), auth_key, offer, domain).await {
        Ok(a) => json_ok(json!({
                "code": 200,
                "msg": "success",
                "server": "rts",
                "traceid": session_hex(a.session),
                "sessionid": session_hex(a.session),
                "jsep": { "type": "answer", "sdp": a.sdp },
        })),
        Err(resp) => resp,
    }
}

/// SRS shape: `{api, streamurl: "webrtc://host/app/stream?...", sdp}` →
/// `{code: 0, sdp, sessionid}`.
async fn srs_play(State(engine): State<Arc<Engine>>, uri: Uri, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    let o = match rts_common::signaling_body::srs_offer(&body) {
        Ok(o) => o,
        Err(e) => return json_error(400, e, None),
    };
    let domain = Some(o.domain).filter(|d| !d.is_empty()).unwrap_or_else(|| host_domain(&headers));
    let (app, stream, auth_key, offer) = (o.app, o.stream, o.auth_key, o.sdp);
    match play(engine, uri, peer, (app, stream), auth_key, offer, domain).await {
        Ok(a) => json_ok(json!({ "code": 0, "server": "rts", "sdp": a.sdp, "sessionid": session_hex(a.session) })),
        Err(resp) => resp,
    }
}

/// SRS's WHEP variant: `POST /rtc/v1/whep/?app=..&stream=..` with an SDP body.
async fn srs_whep(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(app), Some(stream)) = (q.get("app").cloned(), q.get("stream").cloned()) else {
        return json_error(400, "app and stream query parameters are required", None);
    };
    whep_post(State(engine), Path((app, stream)), Query(q), uri, peer, headers, body).await
}

/// Playing sessions with their receiver feedback (RTT, loss) and loss
/// repair figures (NACKs, retransmissions, refusals, GOP restarts), as the
/// shards last reported them (every second).
async fn api_sessions(State(engine): State<Arc<Engine>>) -> Response {
    let sessions: Vec<serde_json::Value> = engine
        .viewer_stats()
        .iter()
        .map(|v| {
            serde_json::json!({
                "session": format!("{:016x}", v.session),
                "rtt_ms": v.rtt_ms,
                "fraction_lost": f64::from(v.fraction_lost) / 256.0,
                "cumulative_lost": v.cumulative_lost,
                "packets_out": v.packets_out,
                "bytes_out": v.bytes_out,
                "nacked": v.nacked,
                "resent": v.resent,
                "resent_bytes": v.resent_bytes,
                "resend_refused": {
                    "within_rtt": v.suppressed_rtt,
                    "max_resends": v.over_max_resends,
                    "budget": v.over_budget,
                    "not_in_history": v.not_in_history,
                    "stale": v.stale,
                },
                "keyframe_guard": v.keyframe_guard,
                "doubled_resends": v.doubled_resends,
                "plis": v.plis,
                "gop_restarts": v.gop_restarts,
            })
        })
        .collect();
    axum::Json(json!({ "sessions": sessions })).into_response()
}

async fn api_streams(State(engine): State<Arc<Engine>>) -> Response {
    let (counters, auth_failures, sessions) = engine.counters();
    json_ok(json!({
        "shards": engine.shard_stats(),
        "streams": engine.streams(),
        "control": {
            "pid": std::process::id(),
            "sessions_handshaking": sessions,
            "counters": counters,
            "auth_failures": auth_failures,
        },
        "cluster": engine.cluster().map(|c| json!({
            "node": c.node_id,
            "directory_up": c.directory_up(),
            "pulls": c.pulls().into_iter().map(|(stream, from, live)| json!({ "stream": stream, "from": from, "live": live })).collect::<Vec<_>>(),
        })),
    }))
}

/// Prometheus text exposition (public): shards, streams, histograms,
/// auth (`metrics.rs`). Traffic per domain is on the admin listener only.
async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    metrics_response(engine, false).await
}

/// Encoding takes ~1 ms per 1,000 streams and tens of ms with their
/// histograms (decision 025): off the async workers.
async fn metrics_response(engine: Arc<Engine>, admin: bool) -> Response {
    match tokio::task::spawn_blocking(move || crate::metrics::Snapshot::of(&engine, admin).encode()).await {
        Ok(out) => (StatusCode::OK, [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], out).into_response(),
        Err(_) => json_error(500, "internal error", None),
    }
}

/// The admin listener (`[admin] listen`, default 127.0.0.1:8081): billing
/// data, never on the public port. Every request carries `[admin] token`
/// as a bearer token when one is set.
pub fn admin_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", get(admin_metrics))
        .route("/api/v1/usage", get(admin_usage))
        .route("/api/v1/reload", post(admin_reload))
        .route("/api/v1/drain", post(admin_drain))
        .route("/api/v1/sessions", get(admin_sessions))
        .route("/api/v1/sessions/{id}/cut", post(admin_cut))
        .route("/api/v1/streams/{app}/{stream}/cut", post(admin_cut_publisher))
        .layer(axum::middleware::from_fn_with_state(engine.clone(), require_admin_token))
        .with_state(engine)
}

/// `POST /api/v1/reload`: as SIGHUP; answers what was applied and what
/// needs a restart, or 400 with why the file was refused (nothing changed).
async fn admin_reload(State(engine): State<Arc<Engine>>) -> Response {
    match tokio::task::spawn_blocking(move || engine.reload()).await {
        Ok(Ok(report)) => json_ok(json!({ "code": 200, "reload": report })),
        Ok(Err(e)) => json_error(400, &format!("configuration refused: {e}"), None),
        Err(_) => json_error(500, "internal error", None),
    }
}

/// `POST /api/v1/drain`: as SIGTERM to the server: no new publishers or
/// viewers (signaling answers 503 with Retry-After, or redirects in a
/// cluster), those here stay up to `[ops] drain_s`, then it exits.
async fn admin_drain(State(engine): State<Arc<Engine>>) -> Response {
    match engine.drain_server() {
        Ok(()) => json_ok(json!({ "code": 200, "draining": true, "drain_s": engine.cfg().ops.drain_s })),
        Err(e) => json_error(500, &e, None),
    }
}

/// `GET /api/v1/sessions` (admin): every client, WebRTC and TCP, with its
/// address, bytes and (WebRTC) RTT and loss.
async fn admin_sessions(State(engine): State<Arc<Engine>>) -> Response {
    match tokio::task::spawn_blocking(move || engine.clients()).await {
        Ok(Ok(rows)) => json_ok(json!({ "sessions": rows })),
        Ok(Err(e)) => json_error(503, &e, None),
        Err(_) => json_error(500, "internal error", None),
    }
}

/// `POST /api/v1/sessions/{id}/cut` (admin): closes that client.
async fn admin_cut(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> Response {
    let Ok(session) = u64::from_str_radix(&id, 16) else {
        return json_error(404, "no such session", None);
    };
    match tokio::task::spawn_blocking(move || engine.cut(session)).await {
        Ok(Ok(true)) => json_ok(json!({ "code": 200, "cut": id })),
        Ok(Ok(false)) => json_error(404, "no such session", None),
        Ok(Err(e)) => json_error(503, &e, None),
        Err(_) => json_error(500, "internal error", None),
    }
}

/// `POST /api/v1/streams/{app}/{stream}/cut[?domain=D]` (admin): closes
/// the stream's publisher (or this node's pull of it).
async fn admin_cut_publisher(State(engine): State<Arc<Engine>>, Path((app, stream)): Path<(String, String)>, Query(q): Query<HashMap<String, String>>) -> Response {
    let domain = q.get("domain").cloned().unwrap_or_default();
    let Some(server_app) = engine.cfg().stream_app(&domain, &app) else {
        return json_error(404, "unknown domain", None);
    };
    let name = format!("{domain}/{app}/{stream}").trim_start_matches('/').to_string();
    match tokio::task::spawn_blocking(move || engine.cut_publisher(&server_app, &stream)).await {
        Ok(Ok(true)) => json_ok(json!({ "code": 200, "cut": name })),
        Ok(Ok(false)) => json_error(404, "nobody publishes that stream here", None),
        Ok(Err(e)) => json_error(503, &e, None),
        Err(_) => json_error(500, "internal error", None),
    }
}

async fn require_admin_token(State(engine): State<Arc<Engine>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let cfg = engine.cfg();
    let token = &cfg.admin.token;
    if !token.is_empty() {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return json_error(401, "admin token required", None);
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The public metrics plus traffic per domain/app/stream/protocol (summed
/// over the shards; they never decrease while control runs).
async fn admin_metrics(State(engine): State<Arc<Engine>>) -> Response {
    metrics_response(engine, true).await
}

/// Traffic totals as JSON: `{"usage": [{domain, app, stream, protocol, bytes_in, bytes_out}]}`.
async fn admin_usage(State(engine): State<Arc<Engine>>) -> Response {
    let rows: Vec<serde_json::Value> = engine
        .usage_totals()
        .iter()
        .map(|(k, v)| {
            json!({
                "domain": k.domain,
                "app": k.app,
                "stream": k.stream,
                "protocol": k.protocol.map_or("", |p| p.as_str()),
                "bytes_in": v.0,
                "bytes_out": v.1,
            })
        })
        .collect();
    json_ok(json!({ "usage": rows }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn auth_keys_are_hidden_in_the_access_log() {
        assert_eq!(super::redact_query("/whep/live/s?auth_key=1-2-3-abc&x=1"), "/whep/live/s?auth_key=***&x=1");
        assert_eq!(super::redact_query("/play/live/s"), "/play/live/s");
        assert_eq!(super::redact_query("/a?auth_keyx=1&auth_key=k"), "/a?auth_keyx=1&auth_key=***");
    }
}
