//! Requests on the shards' media HTTP listener (`[http] media_listen`):
//! `GET`/`HEAD /{app}/{stream}.flv[?auth_key=…]`, the LL-HLS playlist
//! `/{app}/{stream}.m3u8` and what it names (`/{app}/{stream}/init{v}.mp4`,
//! `/{app}/{stream}/{msn}.m4s`, `/{app}/{stream}/{msn}.{part}.m4s`), and
//! CORS preflights.
//! Sans-IO: bytes in, a parsed request or the status to refuse with out.
//! The header block is bounded ([`MAX_HEAD`]); a client that sends more
//! without finishing it gets 431 and is closed. httparse does the HTTP/1.x
//! syntax.

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
}

/// What the path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Flv,
    Playlist,
    Init { version: u32 },
    Segment { msn: u64 },
    Part { msn: u64, part: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRequest {
    pub method: Method,
    pub output: Output,
    pub app: String,
    pub stream: String,
    /// The path as requested, without the query (`/live/s.flv`).
    pub path: String,
    /// The query string, without `?` (may be empty).
    pub query: String,
    /// The Host header, without a port (the streaming domain).
    pub host: String,
    /// Bytes of the head, so the caller knows where a body would start.
    pub head_len: usize,
    /// The connection stays open after the answer (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `keep-alive`).
    pub keep_alive: bool,
}

/// Why a request is refused, as its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
    /// The server drains (shutting down): try again elsewhere or later.
    Unavailable,
}

impl Refusal {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::NotFound => (404, "Not Found"),
            Refusal::MethodNotAllowed => (405, "Method Not Allowed"),
            Refusal::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::Unavailable => (503, "Service Unavailable"),
        }
    }
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete,
/// read more.
pub fn parse(buf: &[u8]) -> Result<Option<MediaRequest>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Refusal::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Err(_) => return Err(Refusal::BadRequest),
    };
    if head_len > MAX_HEAD {
        return Err(Refusal::HeadTooLarge);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    let target = req.path.ok_or(Refusal::BadRequest)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(host_without_port)
        .unwrap_or_default();
    let (app, stream, output) = route(path)?;
    let connection = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let keep_alive = if req.version == Some(1) { !connection.contains("close") } else { connection.contains("keep-alive") };
    Ok(Some(MediaRequest {
        method,
        output,
        app: app.to_string(),
        stream: stream.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        host: host.to_ascii_lowercase(),
        head_len,
        keep_alive,
    }))
}

/// The path → (app, stream, output). Names follow the rule of the
/// signaling API (letters, digits, `-`, `_`, `.`; not empty).
fn route(path: &str) -> Result<(&str, &str, Output), Refusal> {
    let rest = path.strip_prefix('/').ok_or(Refusal::BadRequest)?;
    let mut parts = rest.splitn(3, '/');
    let (app, file, inner) = (parts.next().unwrap_or(""), parts.next().ok_or(Refusal::NotFound)?, parts.next());
    let (stream, output) = match (inner, file.rsplit_once('.')) {
        (None, Some((s, "flv"))) => (s, Output::Flv),
        (None, Some((s, "m3u8"))) => (s, Output::Playlist),
        (Some(inner), _) => (file, hls_file(inner).ok_or(Refusal::NotFound)?),
        _ => return Err(Refusal::NotFound),
    };
    if !valid_name(app) || !valid_name(stream) {
        return Err(Refusal::NotFound);
    }
    Ok((app, stream, output))
}

/// `init{v}.mp4`, `{msn}.m4s`, `{msn}.{part}.m4s`.
fn hls_file(name: &str) -> Option<Output> {
    let number = |s: &str| (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    if let Some(v) = name.strip_prefix("init").and_then(|r| r.strip_suffix(".mp4")) {
        return Some(Output::Init { version: u32::try_from(number(v)?).ok()? });
    }
    let stem = name.strip_suffix(".m4s")?;
    match stem.split_once('.') {
        None => Some(Output::Segment { msn: number(stem)? }),
        Some((msn, part)) => Some(Output::Part { msn: number(msn)?, part: usize::try_from(number(part)?).ok()? }),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `example.com:8088` → `example.com`; `[::1]:8088` → `[::1]`.
fn host_without_port(h: &str) -> &str {
    let h = h.trim();
    match h.rfind(':') {
        Some(i) if !h[i..].contains(']') => &h[..i],
        _ => h,
    }
}

/// The response head of a refusal (a short text body, then close).
pub fn refusal_response(r: Refusal) -> String {
    let (code, reason) = r.status();
    error_response(code, reason)
}

/// A short text response with CORS, then close.
pub fn error_response(code: u16, reason: &str) -> String {
    let body = format!("{code} {reason}\n");
    // A 503 is a drain: the client may come back (to another node).
    let retry = if code == 503 { "Retry-After: 5\r\n" } else { "" };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{retry}{CORS}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// CORS headers on every media response: players on another origin (the
/// player page on the signaling port, flv.js/mpegts.js sites) may read it.
pub const CORS: &str = "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Expose-Headers: *\r\n";

/// The answer to a CORS preflight.
pub fn preflight_response() -> String {
    format!("HTTP/1.1 204 No Content\r\n{CORS}Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// The head of a complete response of `len` bytes: kept open or closed
/// after it, cacheable for `max_age_s` (0: never cached).
pub fn response_head(content_type: &str, len: usize, keep_alive: bool, max_age_s: u32) -> String {
    let cache = if max_age_s == 0 { "no-cache".to_string() } else { format!("max-age={max_age_s}") };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nCache-Control: {cache}\r\n{CORS}Connection: {connection}\r\n\r\n")
}

/// The head of an FLV stream: close-delimited (no length, no chunking),
/// never cached.
pub fn flv_response_head() -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache, no-store\r\n{CORS}Connection: close\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_flv_request_with_query_and_host() {
        let raw = b"GET /live/cam1.flv?auth_key=1-0-0-abc HTTP/1.1\r\nHost: Edge.Example.com:8088\r\nUser-Agent: ffmpeg\r\n\r\n";
        let r = parse(raw).unwrap().unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.output, Output::Flv);
        assert_eq!((r.app.as_str(), r.stream.as_str()), ("live", "cam1"));
        assert_eq!(r.path, "/live/cam1.flv");
        assert_eq!(r.query, "auth_key=1-0-0-abc");
        assert_eq!(r.host, "edge.example.com");
        assert_eq!(r.head_len, raw.len());
    }

    #[test]
    fn incomplete_heads_ask_for_more_until_the_bound() {
        assert_eq!(parse(b"GET /live/s.flv HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        let mut long = b"GET /live/s.flv HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Err(Refusal::HeadTooLarge));
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(p("POST /live/s.flv HTTP/1.1\r\n\r\n"), Err(Refusal::MethodNotAllowed));
        assert_eq!(p("GET /live/s.mp4 HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /live.flv HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /live/a/b.flv HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /live/.flv HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /li%20ve/s.flv HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET live/s.flv HTTP/1.1\r\n\r\n"), Err(Refusal::BadRequest));
        assert_eq!(p("GET /live/s.flv HTTP/1.1\r\nbad header\r\n\r\n"), Err(Refusal::BadRequest));
        assert_eq!(p("\u{1}\u{2}\r\n\r\n"), Err(Refusal::BadRequest));
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(p(&format!("GET /live/s.flv HTTP/1.1\r\n{many}\r\n")), Err(Refusal::HeadTooLarge));
    }

    #[test]
    fn hls_paths_route_to_their_outputs() {
        let out = |path: &str| parse(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes()).map(|r| r.map(|r| (r.app, r.stream, r.output)));
        let ok = |a: &str, s: &str, o| Ok(Some((a.to_string(), s.to_string(), o)));
        assert_eq!(out("/live/s.m3u8"), ok("live", "s", Output::Playlist));
        assert_eq!(out("/live/s/init1.mp4"), ok("live", "s", Output::Init { version: 1 }));
        assert_eq!(out("/live/s.b/12.m4s"), ok("live", "s.b", Output::Segment { msn: 12 }));
        assert_eq!(out("/live/s/12.3.m4s"), ok("live", "s", Output::Part { msn: 12, part: 3 }));
        for bad in ["/live/s/12.m4", "/live/s/x.m4s", "/live/s/1.2.3.m4s", "/live/s/-1.m4s", "/live/s/init.mp4", "/live/s/99999999999999999999.m4s", "/live/s/a/1.m4s", "/live/s/.m4s"] {
            assert_eq!(out(bad), Err(Refusal::NotFound), "{bad}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |raw: &str| parse(raw.as_bytes()).unwrap().unwrap().keep_alive;
        assert!(ka("GET /a/b.m3u8 HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET /a/b.m3u8 HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka("GET /a/b.m3u8 HTTP/1.0\r\n\r\n"));
        assert!(ka("GET /a/b.m3u8 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn head_and_options_are_recognised() {
        assert_eq!(parse(b"HEAD /a/b.flv HTTP/1.1\r\n\r\n").unwrap().unwrap().method, Method::Head);
        assert_eq!(parse(b"OPTIONS /a/b.flv HTTP/1.1\r\n\r\n").unwrap().unwrap().method, Method::Options);
        // A dotted stream name keeps its dots; only the last one is the extension.
        let r = parse(b"GET /a/b.c.flv HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.stream, "b.c");
        assert_eq!(r.host, "");
    }

    #[test]
    fn host_port_is_stripped_for_names_and_ipv6() {
        assert_eq!(host_without_port("a.b:80"), "a.b");
        assert_eq!(host_without_port("[::1]:8088"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("a.b"), "a.b");
    }

    #[test]
    fn responses_carry_cors_and_close() {
        for r in [flv_response_head(), preflight_response(), refusal_response(Refusal::NotFound)] {
            assert!(r.contains("\r\nAccess-Control-Allow-Origin: *\r\n"), "{r}");
            assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        }
        let e = error_response(403, "Forbidden");
        assert!(e.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(e.ends_with("\r\n\r\n403 Forbidden\n"));
        assert!(e.contains("Content-Length: 14\r\n"));
    }
}
