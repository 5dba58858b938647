//! The web player's pages and assets: `GET /play/{app}/{stream}` (the player page),
//! `GET /feed` (the swipe feed), `GET /player.js` (the embeddable player) and
//! `GET /player/hls.min.js` (hls.js for LL-HLS), all embedded in the binary.
//!
//! Caching: the pages and player.js change with the binary and the media ports
//! substituted into them, so they are served `no-cache` with a strong ETag (a
//! browser revalidates and gets `304 Not Modified` while nothing changed);
//! hls.js is a fixed vendored release, cached for a day and revalidated by ETag.
//! The pages need no auth themselves: the `auth_key` in their query goes to
//! signaling and to channel switches, which check it.

use crate::engine::Engine;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The player page. Its `<script id="rts-player-js">` holds the placeholder
/// `__PLAYER_JS__`, replaced by [`PLAYER_JS`] when served ([`player_page`]),
/// so the page works without a second request and the code lives once.
const PLAYER_HTML: &str = include_str!("../assets/player.html");
/// The player engine (`rts.play(video, url, opts)`), also embedded in the page.
const PLAYER_JS: &str = include_str!("../assets/player.js");
/// The swipe feed: one session switched between streams.
const FEED_HTML: &str = include_str!("../assets/feed.html");
/// hls.js 1.6.15 (Apache-2.0, assets/hls.js.LICENSE) for LL-HLS and the fallback.
const HLS_JS: &str = include_str!("../assets/hls.min.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
/// Pages and player.js: always revalidated (cheap: 304 by ETag).
const REVALIDATE: &str = "no-cache";
/// hls.js: a fixed release.
const ONE_DAY: &str = "public, max-age=86400";

/// `GET /play/{app}/{stream}`: the player; it reads app and stream from its URL.
pub async fn page(State(engine): State<Arc<Engine>>, headers: HeaderMap) -> Response {
    asset(&with_ports(&engine, &player_page()), HTML, REVALIDATE, &headers)
}

/// The page with the player inlined (its placeholder replaced).
pub fn player_page() -> String {
    PLAYER_HTML.replacen("__PLAYER_JS__", PLAYER_JS, 1)
}

/// `GET /feed?streams=app/a,app/b,...`: the swipe feed.
pub async fn feed(State(engine): State<Arc<Engine>>, headers: HeaderMap) -> Response {
    asset(&with_ports(&engine, FEED_HTML), HTML, REVALIDATE, &headers)
}

/// `GET /player.js`: the embeddable player.
pub async fn player_js(State(engine): State<Arc<Engine>>, headers: HeaderMap) -> Response {
    asset(&with_ports(&engine, PLAYER_JS), JS, REVALIDATE, &headers)
}

/// `GET /player/hls.min.js`.
pub async fn hls_js(headers: HeaderMap) -> Response {
    asset(HLS_JS, JS, ONE_DAY, &headers)
}

/// The media listener's ports (LL-HLS) on this host, plain and TLS.
fn with_ports(engine: &Engine, text: &str) -> String {
    let cfg = engine.cfg();
    substitute(text, cfg.http.media_listen.port(), cfg.https.media_listen.port())
}

fn substitute(text: &str, media_port: u16, media_tls_port: u16) -> String {
    text.replace("__MEDIA_PORT__", &media_port.to_string()).replace("__MEDIA_TLS_PORT__", &media_tls_port.to_string())
}

/// A strong entity-tag for `body`: FNV-1a 64 of its bytes (stable across
/// runs and nodes for the same content).
fn etag(body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{h:016x}-{:x}\"", body.len())
}

/// `If-None-Match` holds `tag` (or `*`): RFC 9110 §13.1.2, weak comparison.
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

fn asset(body: &str, content_type: &'static str, cache: &'static str, headers: &HeaderMap) -> Response {
    let tag = etag(body);
    let mut resp = if not_modified(headers, &tag) { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, body.to_owned()).into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_embeds_player_js() {
        assert_eq!(PLAYER_HTML.matches("__PLAYER_JS__").count(), 1, "one placeholder in player.html");
        let page = player_page();
        let open = "<script id=\"rts-player-js\">\n";
        let start = page.find(open).expect("the player.js block") + open.len();
        assert!(page[start..].starts_with(PLAYER_JS), "the served page inlines player.js");
        // An inline script ends at the first `</script`: player.js must not contain one.
        assert!(!PLAYER_JS.contains("</script"));
    }

    #[test]
    fn ports_are_substituted() {
        let js = substitute(PLAYER_JS, 8088, 8443);
        assert!(js.contains("const MEDIA_PORT = '8088';") && js.contains("const MEDIA_TLS_PORT = '8443';"));
        let page = substitute(&player_page(), 8088, 8443);
        assert!(!page.contains("__MEDIA_PORT__") && !page.contains("__MEDIA_TLS_PORT__"));
    }

    #[test]
    fn etag_revalidation() {
        let none = HeaderMap::new();
        let r = asset("hello", JS, REVALIDATE, &none);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        let tag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(tag, etag("hellp"), "a changed body changes the tag");

        let mut same = HeaderMap::new();
        same.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap());
        let r = asset("hello", JS, REVALIDATE, &same);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], tag.as_str());

        let mut other = HeaderMap::new();
        other.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        assert_eq!(asset("hello", JS, REVALIDATE, &other).status(), StatusCode::OK);
    }
}
