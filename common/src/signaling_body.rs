//! The JSON bodies of the RTS and SRS signaling shapes, read into what
//! signaling needs (offer, stream names, key, domain): plain functions
//! without I/O, so every malformed body gets a clear error and the fuzzer
//! can reach them (common/fuzz `signaling_body`).

use serde_json::Value;

/// An Alibaba RTS play request (`POST /{app}/{stream}`): its offer, and
/// what its `streamurl` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtsOffer {
    pub sdp: String,
    /// `auth_key` from the streamurl's query, if any.
    pub auth_key: Option<String>,
    /// The streamurl's host (`artc://domain/...`); empty when none.
    pub domain: String,
}

/// An SRS `/rtc/v1/play/` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrsOffer {
    pub sdp: String,
    pub app: String,
    pub stream: String,
    pub auth_key: Option<String>,
    /// The streamurl's host; empty when none.
    pub domain: String,
}

/// Reads an RTS body: `{"streamurl": "artc://...", "jsep": {"type": "offer", "sdp": "..."}}`.
pub fn rts_offer(body: &[u8]) -> Result<RtsOffer, &'static str> {
    let req: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON")?;
    let sdp = req.pointer("/jsep/sdp").and_then(|v| v.as_str()).ok_or("missing jsep.sdp")?.to_string();
    if let Some(t) = req.pointer("/jsep/type") {
        if t.as_str() != Some("offer") {
            return Err("jsep.type must be \"offer\"");
        }
    }
    let url = req.get("streamurl").and_then(|v| v.as_str());
    let auth_key = url.and_then(parse_stream_url).and_then(|(_, _, q)| crate::auth::query_param(&q, "auth_key").map(str::to_string));
    let domain = url.map(crate::config::host_of).unwrap_or_default();
    Ok(RtsOffer { sdp, auth_key, domain })
}

/// Reads an SRS body: `{"streamurl": "webrtc://host/app/stream?...", "sdp": "..."}`.
pub fn srs_offer(body: &[u8]) -> Result<SrsOffer, &'static str> {
    let req: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON")?;
    let (Some(url), Some(sdp)) = (req.get("streamurl").and_then(|v| v.as_str()), req.get("sdp").and_then(|v| v.as_str())) else {
        return Err("missing streamurl or sdp");
    };
    let (app, stream, query) = parse_stream_url(url).ok_or("streamurl must look like webrtc://host/app/stream")?;
    let auth_key = crate::auth::query_param(&query, "auth_key").map(str::to_string);
    Ok(SrsOffer { sdp: sdp.to_string(), app, stream, auth_key, domain: crate::config::host_of(url) })
}

/// Splits `scheme://host[:port]/app/stream[.ext][?query]` into (app, stream, query).
pub fn parse_stream_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (hostpath, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = hostpath.split_once('/').map(|(_, p)| p)?;
    let mut parts = path.trim_matches('/').split('/');
    let app = parts.next()?.to_string();
    let stream = parts.next()?.to_string();
    if parts.next().is_some() || app.is_empty() || stream.is_empty() {
        return None;
    }
    Some((app, stream, query.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rts_bodies() {
        let b = br#"{"version":"2","streamurl":"artc://Live.Example.com/live/s?auth_key=1-2-3-abc","jsep":{"type":"offer","sdp":"v=0"}}"#;
        assert_eq!(rts_offer(b), Ok(RtsOffer { sdp: "v=0".into(), auth_key: Some("1-2-3-abc".into()), domain: "live.example.com".into() }));
        assert_eq!(rts_offer(br#"{"jsep":{"sdp":"v=0"}}"#).map(|o| (o.auth_key, o.domain)), Ok((None, String::new())));
        assert_eq!(rts_offer(br#"{"jsep":{"type":"answer","sdp":"v=0"}}"#), Err("jsep.type must be \"offer\""));
        assert_eq!(rts_offer(br#"{"jsep":{"type":7,"sdp":"v=0"}}"#), Err("jsep.type must be \"offer\""));
        assert_eq!(rts_offer(br#"{"jsep":{}}"#), Err("missing jsep.sdp"));
        assert_eq!(rts_offer(b"\xff{"), Err("body is not JSON"));
    }

    #[test]
    fn srs_bodies() {
        let b = br#"{"api":"x","streamurl":"webrtc://10.0.0.1:1985/live/s?auth_key=k","sdp":"v=0","clientip":null}"#;
        let o = srs_offer(b).unwrap();
        assert_eq!((o.app.as_str(), o.stream.as_str(), o.auth_key.as_deref(), o.domain.as_str()), ("live", "s", Some("k"), "10.0.0.1"));
        assert_eq!(srs_offer(br#"{"streamurl":"webrtc://h/only","sdp":"v=0"}"#), Err("streamurl must look like webrtc://host/app/stream"));
        assert_eq!(srs_offer(br#"{"sdp":"v=0"}"#), Err("missing streamurl or sdp"));
    }

    #[test]
    fn stream_urls() {
        assert_eq!(parse_stream_url("artc://example.com/live/s?auth_key=1-2-3-abc"), Some(("live".into(), "s".into(), "auth_key=1-2-3-abc".into())));
        assert_eq!(parse_stream_url("webrtc://10.0.0.1:8080/app/st"), Some(("app".into(), "st".into(), "".into())));
        assert_eq!(parse_stream_url("webrtc://host/onlyapp"), None);
        assert_eq!(parse_stream_url("webrtc://host/a/b/c"), None);
        assert_eq!(parse_stream_url("garbage"), None);
    }
}
