//! Where the publish credentials hide.
//!
//! Encoders put `?auth_key=...` in different places: ffmpeg and OBS append it to the stream
//! key (`s?auth_key=..`), some tools to the app (`live?auth_key=..`), and it is always in the
//! `tcUrl` when it is in the app. The first non-empty query in that order wins.

/// Splits `name?query` into `(name, query)`; `query` is empty when there is no `?`.
pub(crate) fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((name, query)) => (name, query),
        None => (s, ""),
    }
}

/// Returns `(app, stream, query)` for a publish: names without their query strings, and the
/// first non-empty query of stream key, app, tcUrl.
pub(crate) fn publish_target(app: &str, stream: &str, tc_url: &str) -> (String, String, String) {
    let (stream, stream_q) = split_query(stream);
    let (app, app_q) = split_query(app);
    let (_, tc_q) = split_query(tc_url);
    let query = [stream_q, app_q, tc_q]
        .into_iter()
        .find(|q| !q.is_empty())
        .unwrap_or("");
    (
        app.trim_end_matches('/').to_owned(),
        stream.to_owned(),
        query.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(app: &str, stream: &str, tc: &str) -> (String, String, String) {
        publish_target(app, stream, tc)
    }

    #[test]
    fn query_lookup_order() {
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            t("live", "s?auth_key=abc", "rtmp://h/live"),
            s("live", "s", "auth_key=abc")
        );
        assert_eq!(
            t("live?auth_key=app", "s", "rtmp://h/live?auth_key=app"),
            s("live", "s", "auth_key=app")
        );
        assert_eq!(
            t("live?a=app", "s?a=stream", "rtmp://h/live?a=tc"),
            s("live", "s", "a=stream")
        );
        assert_eq!(t("live", "s", "rtmp://h/live?a=tc"), s("live", "s", "a=tc"));
        assert_eq!(t("live/", "s?", ""), s("live", "s", ""));
        assert_eq!(t("live", "s", ""), s("live", "s", ""));
    }
}
