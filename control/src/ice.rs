//! The peer-facing ICE and DTLS identity rules signaling applies: which of
//! an offer's `a=fingerprint` lines the DTLS certificate is checked against
//! (RFC 8122 §5), what ICE credentials are acceptable (RFC 8839 §5.4), and
//! what a WHEP `PATCH` body asks for (RFC 9725 §4.3, which the WHEP draft
//! follows): trickled candidates or an ICE restart, under an `If-Match`
//! precondition (RFC 9110 §13.1.1).
//!
//! Pure functions over text, so every rule is unit-tested here; http.rs maps
//! the outcomes to status codes and engine.rs applies a restart.

use rand::Rng;
use rts_dtls::HashFunction;
use rts_sdp::{Fingerprint, SessionDescription};

/// The body type of a WHEP/WHIP PATCH (RFC 8840 §9).
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Hash functions in the order we prefer them when an offer lists several
/// (RFC 8122 §5 lets the verifier pick its most preferred): the strongest.
const PREFERENCE: [HashFunction; 3] = [HashFunction::Sha512, HashFunction::Sha384, HashFunction::Sha256];

/// What the peer's DTLS certificate must match: the offer's fingerprints
/// made with one hash function, the one we prefer among those it used. The
/// certificate is accepted when it matches any of them (an offer may list
/// one per certificate it might use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFingerprints {
    pub hash: HashFunction,
    /// Upper-case, colon-separated, as [`rts_dtls::certificate_fingerprint`] writes them.
    pub values: Vec<String>,
}

impl RemoteFingerprints {
    /// Whether the DER certificate `der` has one of these fingerprints.
    pub fn matches(&self, der: &[u8]) -> bool {
        match rts_dtls::certificate_fingerprint(self.hash, der) {
            Ok(fp) => self.values.contains(&fp),
            Err(_) => false,
        }
    }
}

/// Picks what to check the DTLS certificate against from an offer's
/// fingerprints (RFC 8122 §5): the well-formed ones of the most preferred
/// hash function we support. Lines with other hash functions (sha-1, md5,
/// unknown names) or a malformed value are passed over; the offer is refused
/// only when nothing usable is left.
pub fn choose_fingerprints(offered: &[Fingerprint]) -> Result<RemoteFingerprints, String> {
    if offered.is_empty() {
        return Err("offer has no a=fingerprint".into());
    }
    for hash in PREFERENCE {
        let values: Vec<String> = offered
            .iter()
            .filter(|f| HashFunction::from_sdp_name(&f.algorithm) == Some(hash))
            .filter(|f| well_formed(hash, &f.value))
            .map(|f| f.value.to_ascii_uppercase())
            .collect();
        if !values.is_empty() {
            return Ok(RemoteFingerprints { hash, values });
        }
    }
    let seen: Vec<&str> = offered.iter().map(|f| f.algorithm.as_str()).collect();
    Err(format!(
        "no usable a=fingerprint (offered: {}; need a well-formed sha-256, sha-384 or sha-512 one)",
        seen.join(", ")
    ))
}

/// `XX:XX:..` with exactly the digest's length in hex pairs (RFC 8122 §5).
fn well_formed(hash: HashFunction, value: &str) -> bool {
    let mut n = 0;
    for pair in value.split(':') {
        if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        n += 1;
    }
    n == hash.digest_len()
}

/// RFC 8839 §5.4: `ice-ufrag` is 4-256 ice-chars, `ice-pwd` 22-256
/// (ice-char = ALPHA / DIGIT / "+" / "/"). The bound also keeps the
/// session messages to the shard within a ring slot.
pub fn check_credentials(ufrag: &str, pwd: &str) -> Result<(), String> {
    let ice_chars = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err("a=ice-ufrag must be 4 to 256 characters of [A-Za-z0-9+/] (RFC 8839)".into());
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err("a=ice-pwd must be 22 to 256 characters of [A-Za-z0-9+/] (RFC 8839)".into());
    }
    Ok(())
}

/// Random ice-chars (alphanumeric), for our ICE credentials and ETags.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Fresh local credentials (ufrag, pwd) and an entity-tag for a new ICE
/// session. 8 and 24 alphanumerics carry about 47 and 142 random bits, over
/// the 24 and 128 RFC 8839 §5.4 asks for.
pub fn new_ice_session() -> (String, String, String) {
    (random_token(8), random_token(24), random_token(16))
}

/// `If-Match` (RFC 9110 §13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation, i.e. the session exists.
    Any,
    /// Entity-tags as sent (opaque part without quotes; `weak` for `W/`).
    Tags(Vec<(bool, String)>),
}

impl IfMatch {
    /// Reads every `If-Match` field line of a request (a list may be split
    /// over several); `Ok(None)` when there is none.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Option<IfMatch>, String> {
        let mut tags = Vec::new();
        let mut any = false;
        let mut seen = false;
        for v in values {
            seen = true;
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if item == "*" {
                    any = true;
                    continue;
                }
                let (weak, quoted) = match item.strip_prefix("W/") {
                    Some(rest) => (true, rest),
                    None => (false, item),
                };
                let opaque = quoted
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .filter(|s| !s.contains('"'))
                    .ok_or_else(|| format!("If-Match: {item:?} is not an entity-tag (\"...\" or *)"))?;
                tags.push((weak, opaque.to_string()));
            }
        }
        match (seen, any) {
            (false, _) => Ok(None),
            (true, true) if tags.is_empty() => Ok(Some(IfMatch::Any)),
            (true, true) => Err("If-Match: * cannot be combined with entity-tags".into()),
            (true, false) if tags.is_empty() => Err("If-Match is empty".into()),
            (true, false) => Ok(Some(IfMatch::Tags(tags))),
        }
    }

    /// RFC 9110 §13.1.1: `*` holds when the session exists; a list holds
    /// when one of its tags is strongly equal to the current one (`None`:
    /// the session's ICE state, and so its tag, is not known here).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => current.is_some_and(|c| tags.iter().any(|(weak, t)| !weak && t == c)),
        }
    }
}

/// What a PATCH body asks of a session whose remote ICE credentials are
/// `remote_ufrag` / `remote_pwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch {
    /// Candidates (and/or end-of-candidates) for the current ICE session:
    /// how many candidates it listed, and how many of those are UDP ones
    /// we could reach (the rest are discarded, RFC 9725 §4.3.4).
    Trickle { candidates: usize, udp: usize },
    /// New remote credentials: an ICE restart (RFC 9725 §4.3.5 treats any
    /// fragment with credentials other than the current ones as a restart).
    Restart { ufrag: String, pwd: String },
}

/// Reads a PATCH body. Errors are what makes the fragment malformed (400).
pub fn read_patch(body: &str, remote_ufrag: &str, remote_pwd: &str) -> Result<Patch, String> {
    if body.trim().is_empty() {
        return Err("empty SDP fragment".into());
    }
    let frag = SessionDescription::parse_fragment(body).map_err(|e| format!("malformed SDP fragment: {e}"))?;
    // With max-bundle the fragment carries the BUNDLE-tag m-line only
    // (RFC 9725 §4.3.4); credentials may also sit at session level.
    match (frag.ice_ufrag_for(0), frag.ice_pwd_for(0)) {
        (Some(u), Some(p)) if u == remote_ufrag && p == remote_pwd => Ok(trickle(&frag)),
        (Some(u), Some(p)) => {
            check_credentials(u, p)?;
            Ok(Patch::Restart { ufrag: u.to_string(), pwd: p.to_string() })
        }
        // RFC 8840 §4.4 has agents include the credentials; a fragment
        // without either is taken as trickle for the current session
        // rather than refused, since it can only carry candidates.
        (None, None) => Ok(trickle(&frag)),
        _ => Err("SDP fragment has a=ice-ufrag without a=ice-pwd or the reverse".into()),
    }
}

fn trickle(frag: &SessionDescription) -> Patch {
    let udp = frag.candidates.iter().filter(|c| c.component == 1 && c.transport.eq_ignore_ascii_case("udp")).count();
    Patch::Trickle { candidates: frag.candidates.len(), udp }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(alg: &str, value: &str) -> Fingerprint {
        Fingerprint { algorithm: alg.into(), value: value.into() }
    }

    fn hex(n: usize, byte: &str) -> String {
        vec![byte; n].join(":")
    }

    #[test]
    fn the_most_preferred_usable_hash_is_chosen() {
        let (s256, s384, s512) = (hex(32, "aa"), hex(48, "BB"), hex(64, "cc"));
        // aiortc's offer: sha-256, sha-384, sha-512 -> sha-512, upper-cased.
        let all = [fp("sha-256", &s256), fp("sha-384", &s384), fp("sha-512", &s512)];
        let c = choose_fingerprints(&all).unwrap();
        assert_eq!((c.hash, c.values.clone()), (HashFunction::Sha512, vec![s512.to_ascii_uppercase()]));
        // A browser's: sha-256 only.
        let c = choose_fingerprints(&all[..1]).unwrap();
        assert_eq!((c.hash, c.values), (HashFunction::Sha256, vec![s256.to_ascii_uppercase()]));
        // Weak or unknown hashes next to a usable one are passed over.
        let c = choose_fingerprints(&[fp("sha-1", &hex(20, "01")), fp("md5", &hex(16, "02")), fp("sha-384", &s384)]).unwrap();
        assert_eq!(c.hash, HashFunction::Sha384);
        // Two certificates' fingerprints of the chosen hash: both kept.
        let other = hex(32, "DD");
        let c = choose_fingerprints(&[fp("sha-256", &s256), fp("sha-256", &other)]).unwrap();
        assert_eq!(c.values.len(), 2);
        // A malformed sha-512 does not hide a good sha-256.
        let c = choose_fingerprints(&[fp("sha-512", &hex(32, "cc")), fp("sha-256", &s256)]).unwrap();
        assert_eq!(c.hash, HashFunction::Sha256);
    }

    #[test]
    fn nothing_usable_is_refused_with_what_was_offered() {
        assert_eq!(choose_fingerprints(&[]).unwrap_err(), "offer has no a=fingerprint");
        let e = choose_fingerprints(&[fp("sha-1", &hex(20, "01")), fp("md5", &hex(16, "02"))]).unwrap_err();
        assert!(e.contains("offered: sha-1, md5"), "{e}");
        for bad in [hex(31, "aa"), hex(33, "aa"), format!("{}:a", hex(31, "aa")), format!("{}:zz", hex(31, "aa")), String::new(), hex(32, "aa").replace(':', "-")] {
            assert!(choose_fingerprints(&[fp("sha-256", &bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_certificate_matches_by_the_chosen_hash() {
        let cert = b"not really DER, but hashed all the same";
        let fp512 = rts_dtls::certificate_fingerprint(HashFunction::Sha512, cert).unwrap();
        let fp256 = rts_dtls::certificate_fingerprint(HashFunction::Sha256, cert).unwrap();
        let c = choose_fingerprints(&[fp("sha-256", &fp256), fp("sha-512", &fp512.to_ascii_lowercase())]).unwrap();
        assert_eq!(c.hash, HashFunction::Sha512);
        assert!(c.matches(cert));
        assert!(!c.matches(b"another certificate"));
        // The chosen set is what counts: a matching sha-256 does not rescue a wrong sha-512.
        let c = choose_fingerprints(&[fp("sha-256", &fp256), fp("sha-512", &hex(64, "00"))]).unwrap();
        assert!(!c.matches(cert));
    }

    #[test]
    fn credentials_follow_rfc_8839() {
        assert!(check_credentials("VGGS", "PrTeCqILYsH6vXjK0bQgVO").is_ok());
        assert!(check_credentials("a+/b", &"p".repeat(256)).is_ok());
        for (u, p) in [
            ("abc", "PrTeCqILYsH6vXjK0bQgVO"),
            ("abcd", "tooshort"),
            ("ab:d", "PrTeCqILYsH6vXjK0bQgVO"),
            ("abcd", "PrTeCqILYsH6vXjK0bQgV O"),
            (&"u".repeat(257), "PrTeCqILYsH6vXjK0bQgVO"),
            ("abcd", &"p".repeat(257)),
        ] {
            assert!(check_credentials(u, p).is_err(), "{u} {p}");
        }
        let (u, p, tag) = new_ice_session();
        assert!(check_credentials(&u, &p).is_ok());
        assert_eq!(tag.len(), 16);
    }

    #[test]
    fn if_match_parsing_and_strong_comparison() {
        let p = |v: &[&str]| IfMatch::parse(v.iter().copied());
        assert_eq!(p(&[]), Ok(None));
        assert_eq!(p(&["*"]), Ok(Some(IfMatch::Any)));
        assert_eq!(p(&[" \"abc\" , W/\"x\""]), Ok(Some(IfMatch::Tags(vec![(false, "abc".into()), (true, "x".into())]))));
        assert_eq!(p(&["\"a\"", "\"b\""]).unwrap().unwrap(), IfMatch::Tags(vec![(false, "a".into()), (false, "b".into())]));
        for bad in [&["abc"][..], &["\"abc"], &["\"a\"b\""], &[""], &["*, \"a\""], &["W/abc"]] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        let tags = p(&["\"old\", \"cur\""]).unwrap().unwrap();
        assert!(tags.holds(Some("cur")));
        assert!(!tags.holds(Some("new")));
        assert!(!tags.holds(None), "an unknown current tag matches no list");
        assert!(!p(&["W/\"cur\""]).unwrap().unwrap().holds(Some("cur")), "weak tags never match strongly");
        assert!(IfMatch::Any.holds(None));
    }

    const U: &str = "EsAw";
    const P: &str = "P2uYro0UCOQ4zxjKXaWCBui1";

    #[test]
    fn a_fragment_with_the_current_credentials_is_trickle() {
        let body = format!(
            "a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:{U}\r\na=ice-pwd:{P}\r\n\
             a=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n\
             a=candidate:2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n\
             a=candidate:3 1 udp 2122260223 abcd.local 61765 typ host\r\n\
             a=end-of-candidates\r\n"
        );
        assert_eq!(read_patch(&body, U, P), Ok(Patch::Trickle { candidates: 2, udp: 1 }));
        // end-of-candidates alone, and candidates with no credentials at all.
        assert_eq!(read_patch(&format!("a=ice-ufrag:{U}\na=ice-pwd:{P}\na=end-of-candidates\n"), U, P), Ok(Patch::Trickle { candidates: 0, udp: 0 }));
        assert_eq!(read_patch("a=candidate:1 1 udp 5 192.0.2.1 5000 typ host\r\n", U, P), Ok(Patch::Trickle { candidates: 1, udp: 1 }));
    }

    #[test]
    fn new_credentials_are_a_restart() {
        let body = "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                    a=ice-ufrag:ysXw\r\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n";
        assert_eq!(read_patch(body, U, P), Ok(Patch::Restart { ufrag: "ysXw".into(), pwd: "vw5LmwG4y/e6dPP/zAP9Gp5k".into() }));
        // Only the password changed: still new credentials.
        let body = format!("a=ice-ufrag:{U}\r\na=ice-pwd:vw5LmwG4y/e6dPP/zAP9Gp5k\r\n");
        assert!(matches!(read_patch(&body, U, P), Ok(Patch::Restart { .. })));
    }

    #[test]
    fn malformed_fragments_are_refused() {
        for body in [
            String::new(),
            "  \r\n".to_string(),
            "hello world".to_string(),
            "a=candidate:1 1 udp 5 192.0.2.1 notaport typ host\r\n".to_string(),
            format!("a=ice-ufrag:{U}\r\n"),
            format!("a=ice-pwd:{P}\r\n"),
            // New credentials that break RFC 8839 (and would not fit a ring slot).
            format!("a=ice-ufrag:{}\r\na=ice-pwd:{P}\r\n", "u".repeat(5000)),
            format!("a=ice-ufrag:new:x\r\na=ice-pwd:{P}\r\n"),
            "m=audio x UDP 111\r\n".to_string(),
        ] {
            assert!(read_patch(&body, U, P).is_err(), "{body:?}");
        }
    }
}
