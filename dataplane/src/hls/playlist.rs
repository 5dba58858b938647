//! The LL-HLS media playlist of a snapshot (RFC 8216 and its LL-HLS
//! extensions, draft-pantos-hls-rfc8216bis): segments with their
//! EXT-X-PROGRAM-DATE-TIME, the parts of the last segments, a preload hint
//! for the next part, and the server control that lets players block on
//! playlist reloads. URIs are relative to the playlist
//! (`/{app}/{stream}.m3u8` → `{stream}/{msn}.m4s`) and carry the
//! playlist's query (its `auth_key`).

use super::muxer::{HlsSnapshot, Segment, PART_TARGET_MS, TARGET_DURATION_S};
use std::fmt::Write;

/// Complete segments whose parts are still listed (the last ones, within
/// about three target durations of the end, as the draft asks).
const SEGMENTS_WITH_PARTS: usize = 2;

/// The playlist of stream `name` (the last path element before `.m3u8`),
/// `query` appended to every URI (without `?`; empty for none).
pub fn render(s: &HlsSnapshot, name: &str, query: &str) -> String {
    let q = if query.is_empty() { String::new() } else { format!("?{query}") };
    let part_target = f64::from(PART_TARGET_MS) / 1000.0;
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{TARGET_DURATION_S}\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={part_target:.3}\n",
        3.0 * part_target
    );
    let first = s.segments.first().map(|s| &**s).unwrap_or(&s.current);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
    if s.discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", s.discontinuity_seq);
    }
    let mut version = None;
    let listed_parts_from = s.segments.len().saturating_sub(SEGMENTS_WITH_PARTS);
    for (i, seg) in s.segments.iter().enumerate() {
        segment_head(&mut out, seg, &mut version, name, &q);
        if i >= listed_parts_from {
            parts(&mut out, seg, name, &q);
        }
        let _ = write!(out, "#EXTINF:{:.3},\n{name}/{}.m4s{q}\n", seg.duration_90k() as f64 / 90_000.0, seg.msn);
    }
    if !s.current.parts.is_empty() {
        segment_head(&mut out, &s.current, &mut version, name, &q);
        parts(&mut out, &s.current, name, &q);
    }
    let (msn, part) = s.next_part();
    let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{name}/{msn}.{part}.m4s{q}\"");
    out
}

/// The map (when the init changes: with a discontinuity) and the date of a segment.
fn segment_head(out: &mut String, seg: &Segment, version: &mut Option<u32>, name: &str, q: &str) {
    if *version != Some(seg.init_version) {
        if version.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{name}/init{}.mp4{q}\"", seg.init_version);
        *version = Some(seg.init_version);
    }
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rts_common::config::utc_iso8601(seg.pdt_ms));
}

fn parts(out: &mut String, seg: &Segment, name: &str, q: &str) {
    for (i, p) in seg.parts.iter().enumerate() {
        let independent = if p.independent { ",INDEPENDENT=YES" } else { "" };
        let _ = writeln!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{name}/{}.{i}.m4s{q}\"{independent}", p.duration_90k as f64 / 90_000.0, seg.msn);
    }
}

#[cfg(test)]
mod tests {
    use super::super::muxer::Part;
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn seg(msn: u64, parts: usize, version: u32) -> Segment {
        let part = |i: usize| Part { bytes: Bytes::new(), duration_90k: 30_000, independent: i == 0 };
        Segment { msn, parts: (0..parts).map(part).collect(), pdt_ms: 1_796_605_200_000 + msn * 2_000, init_version: version }
    }

    #[test]
    fn a_playlist_lists_segments_recent_parts_and_the_next_part() {
        let s = HlsSnapshot {
            inits: vec![(1, Bytes::new()), (2, Bytes::new())],
            segments: vec![Arc::new(seg(7, 6, 1)), Arc::new(seg(8, 6, 1)), Arc::new(seg(9, 6, 2))],
            current: seg(10, 2, 2),
            discontinuity_seq: 3,
        };
        let p = render(&s, "s", "auth_key=1-2-3-x");
        let expected = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:4
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002
#EXT-X-PART-INF:PART-TARGET=0.334
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-MAP:URI=\"s/init1.mp4?auth_key=1-2-3-x\"
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T01:00:14.000Z
#EXTINF:2.000,
s/7.m4s?auth_key=1-2-3-x
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T01:00:16.000Z
";
        assert!(p.starts_with(expected), "{p}");
        assert!(!p.contains("s/7.0.m4s"), "old segments' parts are not listed");
        assert!(p.contains("#EXT-X-PART:DURATION=0.333,URI=\"s/8.0.m4s?auth_key=1-2-3-x\",INDEPENDENT=YES\n"), "{p}");
        assert!(p.contains("#EXT-X-PART:DURATION=0.333,URI=\"s/8.5.m4s?auth_key=1-2-3-x\"\n"), "{p}");
        assert!(p.contains("s/8.m4s?auth_key=1-2-3-x\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"s/init2.mp4?auth_key=1-2-3-x\"\n"), "{p}");
        assert!(p.contains("#EXT-X-PART:DURATION=0.333,URI=\"s/10.1.m4s?auth_key=1-2-3-x\"\n"), "{p}");
        assert!(p.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/10.2.m4s?auth_key=1-2-3-x\"\n"), "{p}");
        assert_eq!(p.matches("#EXTINF").count(), 3, "the current segment has parts only");
    }
}
