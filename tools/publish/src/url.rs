//! `rtmp://host[:port]/app/stream[?query]` parsing.

use crate::PublishError;

/// The parts of a publish URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (1935 when absent).
    pub port: u16,
    /// Application, e.g. `live`.
    pub app: String,
    /// Stream key including any `?query` (how ffmpeg and OBS send `auth_key`).
    pub stream_key: String,
}

impl RtmpUrl {
    /// Parses a publish URL; the last path segment is the stream, the rest the app.
    pub fn parse(url: &str) -> Result<Self, PublishError> {
        let bad = |why: &str| PublishError::Url(format!("{url}: {why}"));
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| bad("must start with rtmp://"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("missing /app/stream"))?;
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, rest) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                match rest.strip_prefix(':') {
                    Some(p) => (h, p.parse().map_err(|_| bad("bad port"))?),
                    None if rest.is_empty() => (h, 1935),
                    None => return Err(bad("junk after ]")),
                }
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
                None => (authority, 1935),
            },
        };
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (app, stream) = path_only
            .rsplit_once('/')
            .ok_or_else(|| bad("missing stream name"))?;
        if host.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(bad("empty host, app or stream"));
        }
        let stream_key = match query {
            Some(q) => format!("{stream}?{q}"),
            None => stream.to_string(),
        };
        Ok(Self {
            host: host.to_string(),
            port,
            app: app.to_string(),
            stream_key,
        })
    }

    /// The `tcUrl` sent in `connect`: `rtmp://host:port/app`.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }
}
