//! `/metrics` through the prometheus-client crate (decision 025).
//!
//! Every figure here is a snapshot someone else keeps: the shards report
//! their counters and per-stream histograms about once a second over the
//! rings, the engine keeps the latest reports, and control counts its own
//! DTLS handshakes and auth failures. So instead of registering live metric
//! objects (a second copy of that state, kept in step), a scrape takes one
//! [`Snapshot`] of the engine and encodes it through a [`Collector`]: const
//! counters, gauges and histograms written with prometheus-client's
//! encoder, which also does the escaping of label values (stream names
//! come from users). The output is the classic Prometheus text format
//! (0.0.4), as before, so existing scrapers and series names stay.

use crate::engine::{Engine, StreamView};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rts_common::histogram::{Histogram, BOUNDS, DTLS_HANDSHAKE_BOUNDS_US, FIRST_FRAME_BOUNDS_US, SERVER_LATENCY_BOUNDS_US, TRANSCODE_BOUNDS_US};
use rts_common::ipc::{ShardStats, UsageKey, FIRST_FRAME_PROTOCOLS};
use std::collections::BTreeMap;
use std::fmt;

const NO_LABELS: [(&str, &str); 0] = [];

/// The `Content-Type` of what [`Snapshot::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What one scrape exports, taken from the engine at scrape time.
#[derive(Default)]
pub struct Snapshot {
    /// Cluster mode: the directory answered the last heartbeat; pulls live
    /// and waiting.
    pub cluster: Option<(bool, usize, usize)>,
    pub shards: Vec<ShardStats>,
    pub streams: Vec<StreamView>,
    /// Refused signed URLs by "kind:reason".
    pub auth_failures: BTreeMap<String, u64>,
    /// DTLS handshakes: completed, failed.
    pub dtls_handshakes: [Histogram; 2],
    /// Traffic per domain/app/stream/protocol (the admin listener only).
    pub usage: Option<BTreeMap<UsageKey, (u64, u64)>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("shards", &self.shards.len()).field("streams", &self.streams.len()).finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The engine's figures now; `admin` adds the traffic families.
    pub fn of(engine: &Engine, admin: bool) -> Snapshot {
        let cluster = engine.cluster().map(|c| {
            let pulls = c.pulls();
            let live = pulls.iter().filter(|p| p.2).count();
            (c.directory_up(), live, pulls.len() - live)
        });
        let (_, auth_failures, _) = engine.counters();
        Snapshot {
            cluster,
            shards: engine.shard_stats(),
            streams: engine.streams(),
            auth_failures,
            dtls_handshakes: engine.dtls_handshakes(),
            usage: admin.then(|| engine.usage_totals()),
        }
    }

    /// The text exposition.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String fails only if a collector does, and ours
        // do not; an empty answer is better than a panic.
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One family of const counters: `name` gets `_total` from the encoder.
fn counters<L: EncodeLabelSet>(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: impl IntoIterator<Item = (L, u64)>) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: impl IntoIterator<Item = (L, u64)>) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One histogram series: the bucket counts as prometheus-client takes them
/// (per bucket; it writes them cumulative), in seconds. Counts are made
/// so that their running total saturates instead of overflowing (a shard
/// never sends such numbers, but a scrape must not panic on any report).
fn histogram<L: EncodeLabelSet>(m: &mut MetricEncoder, labels: &L, bounds: &[u32; BOUNDS], h: &Histogram) -> fmt::Result {
    let mut buckets = [(0.0, 0u64); BOUNDS + 1];
    let mut total = 0u64;
    for (i, slot) in buckets.iter_mut().enumerate() {
        let upper = bounds.get(i).map_or(f64::INFINITY, |&us| f64::from(us) / 1e6);
        let next = total.saturating_add(h.counts[i]);
        *slot = (upper, next - total);
        total = next;
    }
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, total, &buckets, None)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        if let Some((up, live, waiting)) = self.cluster {
            gauges(&mut enc, "rts_cluster_directory_up", "the Redis directory answered the last heartbeat", [(NO_LABELS, u64::from(up))])?;
            gauges(
                &mut enc,
                "rts_cluster_pulls",
                "streams this node pulls from other nodes (live: delivering; waiting: looked for)",
                [([("state", "live")], live as u64), ([("state", "waiting")], waiting as u64)],
            )?;
        }
        let shards = &self.shards;
        macro_rules! shard_counter {
            ($field:ident, $help:expr) => {
                counters(&mut enc, concat!("rts_shard_", stringify!($field)), $help, shards.iter().map(|s| ([("shard", s.shard)], s.counters.$field)))?;
            };
        }
        shard_counter!(udp_datagrams_in, "UDP datagrams received");
        shard_counter!(udp_datagrams_out, "UDP datagrams sent");
        shard_counter!(udp_bytes_out, "UDP bytes sent");
        shard_counter!(udp_sends, "sendmmsg calls");
        shard_counter!(udp_messages, "UDP messages sent (a GSO super-datagram or one datagram each)");
        shard_counter!(udp_send_errors, "failed sends");
        shard_counter!(gso_fallbacks, "GSO sends that fell back to one datagram per call");
        shard_counter!(udp_recv_rearmed, "Multishot UDP receives re-armed (out of buffers or ended by an error)");
        shard_counter!(udp_recv_truncated, "UDP datagrams longer than a receive buffer, dropped");
        shard_counter!(stun_ok, "STUN binding requests answered");
        shard_counter!(stun_rejected, "STUN messages dropped");
        shard_counter!(unknown_dropped, "datagrams dropped as unknown or unroutable");
        shard_counter!(ring_full_dropped, "droppable messages to control (stats, DTLS records) dropped on a full ring");
        shard_counter!(ctl_backlogged, "state-changing messages to control that waited for ring space");
        shard_counter!(relay_dropped, "relayed media dropped on a full shard-to-shard queue");
        shard_counter!(relay_retried, "state-changing shard-to-shard messages retried after a full queue");
        shard_counter!(rtmp_errors, "RTMP connections closed on protocol errors");
        shard_counter!(nacks_in, "RTCP NACK messages received");
        shard_counter!(nacked, "sequence numbers viewers reported lost");
        shard_counter!(resent, "retransmissions sent (RTX or media SSRC)");
        shard_counter!(resent_bytes, "bytes of retransmissions sent");
        shard_counter!(keyframe_guard, "packets resent unasked ahead of a keyframe to lossy viewers");
        shard_counter!(doubled_resends, "first resends sent as two copies (isolated loss)");
        shard_counter!(resend_refused, "NACKed packets not resent (within RTT, max resends, budget)");
        shard_counter!(plis_in, "PLI/FIR received");
        shard_counter!(gop_restarts, "viewers restarted from the GOP cache on a keyframe request");
        shard_counter!(red_packets, "RED audio packets built");
        shard_counter!(rtmp_publish_refused, "RTMP publishes refused");
        shard_counter!(http_requests, "requests on the media listener");
        shard_counter!(http_refused, "requests on the media listener refused (4xx)");
        shard_counter!(flv_bytes_out, "bytes sent to HTTP-FLV viewers");
        shard_counter!(rtmp_play_bytes_out, "bytes sent to RTMP players");
        shard_counter!(rtmp_play_refused, "RTMP plays refused (auth, stream not live)");
        shard_counter!(flv_skips, "HTTP-FLV viewers and RTMP players that fell behind and skipped to a keyframe");
        shard_counter!(flv_slow_closed, "HTTP-FLV viewers and RTMP players disconnected for not reading");
        gauges(&mut enc, "rts_shard_viewers", "viewers playing", shards.iter().map(|s| ([("shard", s.shard)], s.counters.viewers)))?;
        gauges(&mut enc, "rts_shard_flv_viewers", "HTTP-FLV viewers connected", shards.iter().map(|s| ([("shard", s.shard)], s.counters.flv_viewers)))?;
        gauges(&mut enc, "rts_shard_rtmp_players", "RTMP players connected", shards.iter().map(|s| ([("shard", s.shard)], s.counters.rtmp_players)))?;

        let stream = |v: &StreamView| [("domain", v.domain.clone()), ("app", v.app.clone()), ("stream", v.stream.clone())];
        counters(&mut enc, "rts_stream_bytes_in", "bytes received from the publisher", self.streams.iter().map(|v| (stream(v), v.bytes_in)))?;
        counters(&mut enc, "rts_stream_bytes_out", "bytes sent to viewers (billing)", self.streams.iter().map(|v| (stream(v), v.bytes_out)))?;
        counters(
            &mut enc,
            "rts_auth_failures",
            "refused signed URLs by kind and reason",
            self.auth_failures.iter().map(|(k, v)| {
                let (kind, reason) = k.split_once(':').unwrap_or((k, ""));
                ([("kind", kind), ("reason", reason)], *v)
            }),
        )?;

        // Histograms per shard that carries a stream (each reports its own),
        // cumulative since the stream started on that shard.
        let per_shard = || self.streams.iter().flat_map(|v| v.per_shard.iter().map(move |s| (v, s)));
        let labels = |v: &StreamView, shard: u32| {
            [("shard", shard.to_string()), ("domain", v.domain.clone()), ("app", v.app.clone()), ("stream", v.stream.clone())]
        };
        let mut m = enc.encode_descriptor(
            "rts_server_latency_seconds",
            "server-added latency: RTMP frame received -> the last viewer's packets of it handed to the kernel",
            None,
            MetricType::Histogram,
        )?;
        for (v, s) in per_shard().filter(|(_, s)| s.latency_hist.count() > 0) {
            histogram(&mut m, &labels(v, s.shard), &SERVER_LATENCY_BOUNDS_US, &s.latency_hist)?;
        }
        let mut m = enc.encode_descriptor(
            "rts_first_frame_seconds",
            "per viewer: media can flow (WebRTC: SRTP keys installed; HTTP-FLV, RTMP: play accepted) -> its first video sent",
            None,
            MetricType::Histogram,
        )?;
        for (v, s) in per_shard() {
            for (protocol, h) in FIRST_FRAME_PROTOCOLS.iter().zip(s.first_frame_hist.iter()).filter(|(_, h)| h.count() > 0) {
                histogram(&mut m, &(labels(v, s.shard), [("protocol", protocol.as_str())]), &FIRST_FRAME_BOUNDS_US, h)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "rts_transcode_delay_seconds",
            "delay the transcoder adds (input frame arrival -> output ready), by kind",
            None,
            MetricType::Histogram,
        )?;
        for (v, s) in per_shard() {
            for (kind, h) in [("audio", &s.audio_transcode_hist), ("video", &s.video_transcode_hist)].into_iter().filter(|(_, h)| h.count() > 0) {
                histogram(&mut m, &(labels(v, s.shard), [("kind", kind)]), &TRANSCODE_BOUNDS_US, h)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "rts_dtls_handshake_seconds",
            "DTLS handshakes in control: the peer's first record -> done (ok) or given up (failed)",
            None,
            MetricType::Histogram,
        )?;
        for (result, h) in [("ok", &self.dtls_handshakes[0]), ("failed", &self.dtls_handshakes[1])] {
            histogram(&mut m, &[("result", result)], &DTLS_HANDSHAKE_BOUNDS_US, h)?;
        }

        if let Some(usage) = &self.usage {
            let key = |k: &UsageKey| {
                [("domain", k.domain.clone()), ("app", k.app.clone()), ("stream", k.stream.clone()), ("protocol", k.protocol.map_or("", |p| p.as_str()).to_string())]
            };
            counters(&mut enc, "rts_usage_bytes_out", "payload bytes sent per domain/app/stream/protocol (traffic records)", usage.iter().map(|(k, v)| (key(k), v.1)))?;
            counters(&mut enc, "rts_usage_bytes_in", "payload bytes received per domain/app/stream/protocol (traffic records)", usage.iter().map(|(k, v)| (key(k), v.0)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rts_common::ipc::{Protocol, ShardCounters, StreamStats};

    /// One parsed sample line: name, labels in order, value.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A small parser of the text format, written from the format's rules
    /// (not from the encoder): `name{k="v",...} value`, label values with
    /// `\\`, `\"` and `\n` escapes.
    fn parse(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
        let mut types = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').expect("TYPE name type");
                types.push((name.to_string(), t.to_string()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("a name");
            let name = line[..name_end].to_string();
            let mut labels = Vec::new();
            let mut rest = &line[name_end..];
            if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                loop {
                    let (i, c) = chars.next().expect("unterminated labels");
                    if c == '}' {
                        rest = &body[i + 1..];
                        break;
                    }
                    if c == ',' {
                        continue;
                    }
                    let eq = body[i..].find('=').expect("=") + i;
                    let key = body[i..eq].to_string();
                    while chars.peek().is_some_and(|&(j, _)| j <= eq + 1) {
                        chars.next(); // the key, '=' and the opening quote
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("unterminated value").1 {
                            '"' => break,
                            '\\' => match chars.next().expect("escape").1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.push((key, value));
                }
            }
            let value = rest.trim().parse::<f64>().unwrap_or_else(|_| if rest.trim() == "+Inf" { f64::INFINITY } else { panic!("value in {line:?}") });
            samples.push(Sample { name, labels, value });
        }
        (types, samples)
    }

    fn label<'a>(s: &'a Sample, key: &str) -> Option<&'a str> {
        s.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn snapshot() -> Snapshot {
        // Hand-placed: 2 at <= 100 µs, 1 at <= 1 ms, 1 above 250 ms.
        let latency = Histogram { counts: [2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], sum_us: 300_000 };
        // Four first frames within (100, 150] ms.
        let flv = Histogram { counts: [0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0], sum_us: 480_000 };
        let nasty = "we\"ird\\na\nme";
        let stats = StreamStats { shard: 1, app: "live".into(), stream: nasty.into(), latency_hist: latency, first_frame_hist: [Histogram::default(), flv, Histogram::default()], ..Default::default() };
        let view = StreamView { domain: String::new(), app: "live".into(), stream: nasty.into(), shard: 1, bytes_in: 10, bytes_out: 20, per_shard: vec![stats], ..Default::default() };
        let shard = |i| ShardStats {
            shard: i,
            core: None,
            pinned: false,
            udp_port: 8000,
            gso: true,
            uring_fixed_files: false,
            udp_multishot: false,
            udp_read_at_turns: false,
            busy_permille: 0,
            audio_paired: false,
            draining: false,
            clients: 0,
            counters: ShardCounters { udp_datagrams_in: 7 + u64::from(i), viewers: 3, ..Default::default() },
        };
        // One handshake of (10, 25] ms.
        let dtls_ok = Histogram { counts: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], sum_us: 20_000 };
        let mut usage = BTreeMap::new();
        usage.insert(UsageKey::new("d", "live", "s", Protocol::Flv), (5, 6));
        Snapshot {
            cluster: Some((true, 1, 2)),
            shards: vec![shard(0), shard(1)],
            streams: vec![view],
            auth_failures: [("play:expired".to_string(), 3)].into_iter().collect(),
            dtls_handshakes: [dtls_ok, Histogram::default()],
            usage: Some(usage),
        }
    }

    #[test]
    fn histograms_are_typed_cumulative_and_end_with_inf_equal_to_count() {
        let text = snapshot().encode();
        let (types, samples) = parse(&text);
        let type_of = |n: &str| types.iter().find(|(name, _)| name == n).map(|(_, t)| t.as_str());
        for h in ["rts_server_latency_seconds", "rts_first_frame_seconds", "rts_transcode_delay_seconds", "rts_dtls_handshake_seconds"] {
            assert_eq!(type_of(h), Some("histogram"), "{h}: {text}");
        }
        assert_eq!(type_of("rts_shard_udp_datagrams_in_total"), Some("counter"));
        assert_eq!(type_of("rts_shard_viewers"), Some("gauge"));

        let series = |name: &str| samples.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
        let buckets = series("rts_server_latency_seconds_bucket");
        let les: Vec<&str> = buckets.iter().map(|s| label(s, "le").unwrap()).collect();
        assert_eq!(les, ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]);
        let counts: Vec<f64> = buckets.iter().map(|s| s.value).collect();
        assert_eq!(counts, [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0], "cumulative");
        assert_eq!(series("rts_server_latency_seconds_count")[0].value, 4.0);
        assert_eq!(series("rts_server_latency_seconds_sum")[0].value, 0.3);
        assert_eq!(label(&buckets[0], "shard"), Some("1"));

        // Every histogram series: non-decreasing buckets, +Inf last and equal to _count.
        for h in ["rts_server_latency_seconds", "rts_first_frame_seconds", "rts_dtls_handshake_seconds"] {
            let counts = series(&format!("{h}_count"));
            assert!(!counts.is_empty(), "{h}");
            for c in counts {
                let same = |s: &Sample| s.labels.iter().filter(|(k, _)| k != "le").eq(c.labels.iter());
                let b: Vec<&Sample> = samples.iter().filter(|s| s.name == format!("{h}_bucket") && same(s)).collect();
                assert!(b.windows(2).all(|w| w[0].value <= w[1].value), "{h}: {b:?}");
                let last = b.last().expect("buckets");
                assert_eq!(label(last, "le"), Some("+Inf"));
                assert_eq!(last.value, c.value, "{h}: +Inf == _count");
            }
        }
        let ff = series("rts_first_frame_seconds_count");
        assert_eq!(ff.len(), 1, "only protocols with first frames: {ff:?}");
        assert_eq!((label(&ff[0], "protocol"), ff[0].value), (Some("flv"), 4.0));
        let dtls = series("rts_dtls_handshake_seconds_count");
        assert_eq!(dtls.iter().map(|s| (label(s, "result").unwrap(), s.value)).collect::<Vec<_>>(), [("ok", 1.0), ("failed", 0.0)]);
        assert!(series("rts_transcode_delay_seconds_count").is_empty(), "nothing transcoded");
    }

    #[test]
    fn names_from_users_are_escaped_and_existing_series_stay() {
        let text = snapshot().encode();
        // The stream name `we"ird\na<newline>me`, escaped as the format says.
        assert!(text.contains(r#"rts_stream_bytes_in_total{domain="",app="live",stream="we\"ird\\na\nme"} 10"#), "{text}");
        let (_, samples) = parse(&text);
        let out = samples.iter().find(|s| s.name == "rts_stream_bytes_out_total").expect("bytes out");
        assert_eq!(label(out, "stream"), Some("we\"ird\\na\nme"), "round trip");
        assert_eq!(out.value, 20.0);
        assert!(samples.iter().any(|s| s.name == "rts_server_latency_seconds_bucket" && label(s, "stream") == Some("we\"ird\\na\nme")));
        for line in [
            "# TYPE rts_shard_udp_datagrams_in_total counter",
            "rts_shard_udp_datagrams_in_total{shard=\"0\"} 7\n",
            "rts_shard_udp_datagrams_in_total{shard=\"1\"} 8\n",
            "rts_shard_viewers{shard=\"1\"} 3\n",
            "rts_auth_failures_total{kind=\"play\",reason=\"expired\"} 3\n",
            "\nrts_cluster_directory_up 1\n",
            "rts_cluster_pulls{state=\"live\"} 1\nrts_cluster_pulls{state=\"waiting\"} 2\n",
            "rts_usage_bytes_out_total{domain=\"d\",app=\"live\",stream=\"s\",protocol=\"flv\"} 6\n",
            "rts_usage_bytes_in_total{domain=\"d\",app=\"live\",stream=\"s\",protocol=\"flv\"} 5\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        let public = Snapshot { usage: None, ..snapshot() }.encode();
        assert!(!public.contains("rts_usage_"), "traffic only on the admin listener");
    }

    #[test]
    fn absurd_reports_do_not_panic() {
        let full = Histogram { counts: [u64::MAX; BOUNDS + 1], sum_us: u64::MAX };
        let stats = StreamStats { latency_hist: full, first_frame_hist: [full; 3], audio_transcode_hist: full, ..Default::default() };
        let s = Snapshot { streams: vec![StreamView { per_shard: vec![stats], ..Default::default() }], ..Default::default() };
        let text = s.encode();
        assert!(text.contains(&format!("rts_server_latency_seconds_bucket{{shard=\"0\",domain=\"\",app=\"\",stream=\"\",le=\"+Inf\"}} {}\n", u64::MAX)), "{text}");
    }

    /// What a scrape costs with many streams (decision 025), by hand:
    /// `cargo test -p rts-control --lib encode_cost -- --ignored --nocapture`
    /// (add `--config 'profile.dev.package.rts-control.opt-level=3'` and the
    /// same for prometheus-client for optimised numbers). Prints; asserts
    /// nothing about time.
    #[test]
    #[ignore]
    fn encode_cost() {
        for n in [10usize, 1_000] {
            let mut s = snapshot();
            let one = s.streams[0].per_shard[0].clone();
            s.streams = (0..n)
                .map(|i| {
                    let mut st = one.clone();
                    st.stream = format!("stream-{i}");
                    st.audio_transcode_hist = one.latency_hist;
                    let mut other = st.clone();
                    other.shard = 0;
                    StreamView { app: "live".into(), stream: st.stream.clone(), per_shard: vec![st, other], ..Default::default() }
                })
                .collect();
            let rounds = 20;
            let t = std::time::Instant::now();
            let mut bytes = 0;
            for _ in 0..rounds {
                let copy = Snapshot { streams: s.streams.clone(), shards: s.shards.clone(), auth_failures: s.auth_failures.clone(), ..Default::default() };
                bytes = copy.encode().len();
            }
            let per = t.elapsed() / rounds;
            println!("{n} streams x 2 shards: {per:?} per scrape (snapshot copy + encode), {bytes} bytes");
        }
    }
}
