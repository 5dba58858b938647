//! Signed-URL auth on hostile strings. The input is 8 bytes of `now` (BE), then UTF-8
//! text split on '\n' into `query`, `app`, `stream`, `ext`. Checks:
//!
//! * `query_param` returns part of the query and `AuthConfig::check` never
//!   panics, whatever the token (with one or two keys, auth on or off);
//! * the text as a URL: when `sign_url` signs it and its path is a stream path, the
//!   `auth_key` it wrote must pass `check` for that stream (signer and verifier agree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::auth::{query_param, sign_path, sign_url, split_stream_path, AuthConfig};

const KEY: &str = "fuzz_key";

fuzz_target!(|data: &[u8]| {
    let Some((now, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let now = u64::from_be_bytes(*now);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut parts = text.split('\n');
    let query = parts.next().unwrap_or("");
    let app = parts.next().unwrap_or("live");
    let stream = parts.next().unwrap_or("s");
    let ext = parts.next();

    let cfg = AuthConfig {
        key: Some(KEY.into()),
        secondary_key: (now & 1 == 1).then(|| "fuzz_key_2".into()),
        validity_s: now >> 48,
    };
    let token = query_param(query, "auth_key");
    if let Some(t) = token {
        assert!(query.contains(t));
    }
    let _ = cfg.check(app, stream, ext, token, now);
    let _ = AuthConfig::default().check(app, stream, ext, token, now);
    let _ = split_stream_path(query);

    // A token we sign for this stream must verify, with or without the extension.
    let ts = now >> 1;
    let base = format!("/{app}/{stream}");
    let tok = sign_path(&base, KEY, ts, "r4nd", "0");
    assert_eq!(cfg.check(app, stream, ext, Some(&tok), ts), Ok(()), "{tok}");

    // Signer and verifier agree on whole URLs.
    let Ok(url) = sign_url(text, KEY, ts, Some("r4nd")) else {
        return;
    };
    let (_, rest) = url.split_once("://").expect("signed URL has a scheme");
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (target, query) = rest.split_once('?').expect("signed URL has a query");
    let path = &target[target.find('/').expect("signed URL has a path")..];
    let Some((app, stream, ext)) = split_stream_path(path) else {
        return;
    };
    let got = query_param(query, "auth_key");
    assert_eq!(
        cfg.check(app, stream, ext, got, ts),
        Ok(()),
        "{url} -> {app:?} {stream:?} {ext:?} {got:?}"
    );
});
