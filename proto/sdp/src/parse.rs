//! SDP text → [`SessionDescription`].
//!
//! Strict about structure (every line `<letter>=<value>`, `v=0` first, well-formed `m=`
//! lines, numeric payload types) so garbage is rejected with a line number; tolerant of
//! unknown `a=` attributes and of line types WebRTC does not use (`o=`, `b=`, ...), because
//! browsers add new attributes every few releases.

use std::net::IpAddr;

use crate::error::Error;
use crate::types::{
    Candidate, Codec, Direction, Fingerprint, MediaKind, MediaSection, SessionDescription, Setup,
};

/// Parses an SDP with CRLF or LF line endings. A `fragment` (RFC 8840
/// `application/trickle-ice-sdpfrag`) has no `v=0` line: its lines are read the same way.
pub(crate) fn parse(sdp: &str, fragment: bool) -> Result<SessionDescription, Error> {
    let mut desc = SessionDescription::default();
    let mut seen_version = fragment;
    // Session-level direction is the default for every media section (RFC 8866 §6.7).
    let mut session_direction = Direction::SendRecv;

    for (idx, raw) in sdp.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(if seen_version {
                Error::BadLine { line: line_no }
            } else {
                Error::MissingVersion
            });
        }
        // Index 2 is a char boundary: bytes 0 and 1 are ASCII.
        let (kind, value) = (bytes[0], &line[2..]);
        if !seen_version {
            if kind == b'v' && value.trim() == "0" {
                seen_version = true;
                continue;
            }
            return Err(Error::MissingVersion);
        }
        match kind {
            b'm' => {
                let mut m = parse_media_line(value, line_no)?;
                m.direction = session_direction;
                desc.media.push(m);
            }
            b'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                let attr = Attr {
                    name,
                    val,
                    line: line_no,
                };
                match desc.media.last_mut() {
                    Some(m) => media_attr(m, &mut desc.candidates, &attr)?,
                    None => session_attr(&mut desc, &mut session_direction, &attr)?,
                }
            }
            // o=, s=, t=, c=, b=, ... carry nothing WebRTC negotiation needs.
            _ => {}
        }
    }
    if !seen_version {
        return Err(Error::MissingVersion);
    }
    Ok(desc)
}

/// One `a=name[:val]` line.
struct Attr<'a> {
    name: &'a str,
    val: Option<&'a str>,
    line: usize,
}

impl<'a> Attr<'a> {
    /// The trimmed, non-empty value, or a `BadAttribute` error naming `attribute`.
    fn value(&self, attribute: &'static str) -> Result<&'a str, Error> {
        match self.val.map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.bad(attribute)),
        }
    }

    fn bad(&self, attribute: &'static str) -> Error {
        Error::BadAttribute {
            line: self.line,
            attribute,
        }
    }
}

fn session_attr(
    desc: &mut SessionDescription,
    session_direction: &mut Direction,
    a: &Attr<'_>,
) -> Result<(), Error> {
    match a.name {
        "ice-ufrag" => desc.ice_ufrag = Some(a.value("ice-ufrag")?.to_owned()),
        "ice-pwd" => desc.ice_pwd = Some(a.value("ice-pwd")?.to_owned()),
        "fingerprint" => {
            let f = parse_fingerprint(a)?;
            desc.fingerprint.get_or_insert_with(|| f.clone());
            desc.fingerprints.push(f);
        }
        "setup" => desc.setup = Some(parse_setup(a)?),
        "ice-lite" => desc.ice_lite = true,
        "group" => {
            let mut it = a.value("group")?.split_ascii_whitespace();
            // Only the first BUNDLE group matters: we use a single transport.
            if it.next() == Some("BUNDLE") && desc.bundle_mids.is_empty() {
                desc.bundle_mids = it.map(str::to_owned).collect();
            }
        }
        "candidate" => {
            if let Some(c) = parse_candidate(a)? {
                desc.candidates.push(c);
            }
        }
        other => {
            if let Some(d) = Direction::from_attr(other) {
                *session_direction = d;
            }
        }
    }
    Ok(())
}

fn media_attr(m: &mut MediaSection, all: &mut Vec<Candidate>, a: &Attr<'_>) -> Result<(), Error> {
    match a.name {
        "mid" => m.mid = Some(a.value("mid")?.to_owned()),
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp-rsize" => m.rtcp_rsize = true,
        "ice-ufrag" => m.ice_ufrag = Some(a.value("ice-ufrag")?.to_owned()),
        "ice-pwd" => m.ice_pwd = Some(a.value("ice-pwd")?.to_owned()),
        "fingerprint" => {
            let f = parse_fingerprint(a)?;
            m.fingerprint.get_or_insert_with(|| f.clone());
            m.fingerprints.push(f);
        }
        "setup" => m.setup = Some(parse_setup(a)?),
        "extmap" => {
            let v = a.value("extmap")?;
            let (id, rest) = v.split_once(' ').ok_or_else(|| a.bad("extmap"))?;
            // `<id>[/<direction>]`
            let id = id.split('/').next().unwrap_or(id);
            let id: u8 = id.parse().map_err(|_| a.bad("extmap"))?;
            let uri = rest
                .split_ascii_whitespace()
                .next()
                .ok_or_else(|| a.bad("extmap"))?;
            m.extmaps.push((id, uri.to_owned()));
        }
        "ssrc" => {
            let v = a.value("ssrc")?;
            let id = v.split_ascii_whitespace().next().unwrap_or(v);
            let ssrc: u32 = id.parse().map_err(|_| a.bad("ssrc"))?;
            if !m.ssrcs.contains(&ssrc) {
                m.ssrcs.push(ssrc);
            }
        }
        "candidate" => {
            if let Some(c) = parse_candidate(a)? {
                all.push(c.clone());
                m.candidates.push(c);
            }
        }
        "rtpmap" => {
            let (pt, rest) = split_pt(a, "rtpmap")?;
            let mut parts = rest.split('/');
            let name = parts.next().unwrap_or("").trim();
            let clock: u32 = parts
                .next()
                .and_then(|c| c.trim().parse().ok())
                .ok_or_else(|| a.bad("rtpmap"))?;
            let channels = match parts.next() {
                Some(c) => Some(c.trim().parse::<u16>().map_err(|_| a.bad("rtpmap"))?),
                None => None,
            };
            if name.is_empty() {
                return Err(a.bad("rtpmap"));
            }
            if let Some(c) = codec_mut(m, pt) {
                c.name = name.to_owned();
                c.clock_rate = clock;
                c.channels = channels;
            }
        }
        "fmtp" => {
            let (pt, params) = split_pt(a, "fmtp")?;
            let apt = apt_param(params, a.line)?;
            if let Some(c) = codec_mut(m, pt) {
                c.fmtp = Some(params.to_owned());
                c.apt = apt;
            }
        }
        "rtcp-fb" => {
            let v = a.value("rtcp-fb")?;
            let (pt, rest) = v.split_once(' ').ok_or_else(|| a.bad("rtcp-fb"))?;
            let fb: Vec<&str> = rest.split_ascii_whitespace().collect();
            if fb.is_empty() {
                return Err(a.bad("rtcp-fb"));
            }
            let fb = fb.join(" ");
            if pt == "*" {
                m.codecs.iter_mut().for_each(|c| c.rtcp_fb.push(fb.clone()));
            } else if let Some(c) = codec_mut(m, parse_pt(pt, a.line)?) {
                c.rtcp_fb.push(fb);
            }
        }
        other => {
            if let Some(d) = Direction::from_attr(other) {
                m.direction = d;
            }
        }
    }
    Ok(())
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`
fn parse_media_line(value: &str, line: usize) -> Result<MediaSection, Error> {
    let bad = || Error::BadMediaLine { line };
    let mut it = value.split_ascii_whitespace();
    let kind = MediaKind::from_token(it.next().ok_or_else(bad)?);
    let port_tok = it.next().ok_or_else(bad)?;
    let port: u16 = port_tok
        .split('/')
        .next()
        .unwrap_or(port_tok)
        .parse()
        .map_err(|_| bad())?;
    let protocol = it.next().ok_or_else(bad)?.to_owned();
    let formats: Vec<String> = it.map(str::to_owned).collect();
    if formats.is_empty() {
        return Err(bad());
    }
    let mut codecs = Vec::new();
    if protocol.contains("RTP/") {
        for f in &formats {
            let pt = parse_pt(f, line)?;
            if !codecs.iter().any(|c: &Codec| c.payload_type == pt) {
                codecs.push(static_codec(pt));
            }
        }
    }
    Ok(MediaSection {
        kind,
        port,
        protocol,
        formats,
        mid: None,
        direction: Direction::SendRecv,
        codecs,
        rtcp_mux: false,
        rtcp_rsize: false,
        extmaps: Vec::new(),
        ice_ufrag: None,
        ice_pwd: None,
        fingerprint: None,
        fingerprints: Vec::new(),
        setup: None,
        ssrcs: Vec::new(),
        candidates: Vec::new(),
    })
}

/// A codec entry for `pt` before any rtpmap: static payload types (RFC 3551) get their
/// well-known encoding, dynamic ones stay nameless until an `a=rtpmap` names them.
fn static_codec(pt: u8) -> Codec {
    let (name, clock_rate, channels) = match pt {
        0 => ("PCMU", 8000, Some(1)),
        8 => ("PCMA", 8000, Some(1)),
        9 => ("G722", 8000, Some(1)),
        13 => ("CN", 8000, Some(1)),
        _ => ("", 0, None),
    };
    Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate,
        channels,
        fmtp: None,
        rtcp_fb: Vec::new(),
        apt: None,
    }
}

fn codec_mut(m: &mut MediaSection, pt: u8) -> Option<&mut Codec> {
    m.codecs.iter_mut().find(|c| c.payload_type == pt)
}

fn parse_pt(s: &str, line: usize) -> Result<u8, Error> {
    match s.trim().parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(Error::BadPayloadType { line }),
    }
}

/// `<pt> <rest>` as used by `a=rtpmap` and `a=fmtp`.
fn split_pt<'a>(a: &Attr<'a>, attribute: &'static str) -> Result<(u8, &'a str), Error> {
    let v = a.value(attribute)?;
    let (pt, rest) = v.split_once(' ').ok_or_else(|| a.bad(attribute))?;
    Ok((parse_pt(pt, a.line)?, rest.trim()))
}

/// The `apt=` payload type of an RTX fmtp, if any.
fn apt_param(params: &str, line: usize) -> Result<Option<u8>, Error> {
    for kv in params.split(';') {
        if let Some((k, v)) = kv.trim().split_once('=') {
            if k.trim().eq_ignore_ascii_case("apt") {
                return parse_pt(v, line).map(Some);
            }
        }
    }
    Ok(None)
}

fn parse_fingerprint(a: &Attr<'_>) -> Result<Fingerprint, Error> {
    let mut it = a.value("fingerprint")?.split_ascii_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(alg), Some(value), None) => Ok(Fingerprint {
            algorithm: alg.to_ascii_lowercase(),
            value: value.to_owned(),
        }),
        _ => Err(a.bad("fingerprint")),
    }
}

fn parse_setup(a: &Attr<'_>) -> Result<Setup, Error> {
    Setup::from_value(a.value("setup")?).ok_or_else(|| a.bad("setup"))
}

/// RFC 8839 §5.1. Returns `Ok(None)` for a well-formed candidate whose address is not an
/// IP literal (mDNS `*.local`, FQDN): we cannot reach it, but it is not an error either.
fn parse_candidate(a: &Attr<'_>) -> Result<Option<Candidate>, Error> {
    let bad = || a.bad("candidate");
    let mut it = a.value("candidate")?.split_ascii_whitespace();
    let mut next = || it.next().ok_or_else(bad);
    let foundation = next()?;
    let component: u16 = next()?.parse().map_err(|_| bad())?;
    let transport = next()?;
    let priority: u32 = next()?.parse().map_err(|_| bad())?;
    let address = next()?;
    let port: u16 = next()?.parse().map_err(|_| bad())?;
    if next()? != "typ" {
        return Err(bad());
    }
    let typ = next()?;
    let Ok(address) = address.parse::<IpAddr>() else {
        return Ok(None);
    };
    Ok(Some(Candidate {
        foundation: foundation.to_owned(),
        component,
        transport: transport.to_owned(),
        priority,
        address,
        port,
        typ: typ.to_owned(),
    }))
}
