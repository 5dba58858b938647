//! `scripts/fuzz.sh` target `dataplane:rtcp_feedback`: arbitrary RTCP from
//! viewers (NACK, PLI, FIR, receiver reports, garbage) into the sans-IO
//! core while a stream plays, driving the loss-repair logic: the history
//! lookup, the sequence mapping across channel switches, RTT, budget, GOP
//! restarts. Nothing may panic, everything the core sends a viewer must
//! decrypt, and every retransmission must carry a packet that viewer was
//! sent before.
//!
//! Input: a sequence of commands, each a tag byte and a length-prefixed
//! body. Tag % 4: 0 = RTCP (plain compound, SRTCP-protected here) from the
//! viewer with RTX, 1 = the same from the viewer without RTX, 2 = time
//! passes (body[0] × 5 ms) and a frame is published (keyframe when
//! body[1] is odd), 3 = the RTX viewer switches stream. So that NACKs hit
//! packets the viewer really had (its numbering starts at random), RTCP
//! feedback and report blocks naming SSRC 0 are aimed at the viewer's
//! video, and NACKed numbers count from its first video packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_common::ipc::ControlToShard;
use rts_dataplane::testkit::{frame, publish, ms, Publisher, Rig, Viewer};
use std::collections::HashSet;

struct State {
    /// Each viewer's first video sequence number.
    base: [u16; 2],
    rig: Rig,
    a: Publisher,
    b: Publisher,
    viewers: [Viewer; 2],
    /// Video sequence numbers each viewer was sent (received or lost).
    sent: [HashSet<u16>; 2],
    ts: u32,
    on_b: bool,
}

fn setup() -> State {
    let mut rig = Rig::new("");
    let a = publish(&mut rig, 1, "live", "a", 5);
    let b = publish(&mut rig, 2, "live", "b", 5);
    let with_rtx = Viewer::join(&mut rig, 1, "live", "a");
    let plain = Viewer::new(2);
    rig.control(plain.add_msg("live", "a", None));
    plain.check(&mut rig);
    rig.control(plain.start_with(|m| *m.video_rtx = None));
    let mut st = State { base: [0; 2], rig, a, b, viewers: [with_rtx, plain], sent: [HashSet::new(), HashSet::new()], ts: 200, on_b: false };
    st.rig.advance(ms(100));
    for (i, v) in st.viewers.iter_mut().enumerate() {
        v.recv(&st.rig);
        st.base[i] = v.video().first().map_or(0, |p| p.seq);
        st.sent[i].extend(v.video().iter().map(|p| p.seq));
    }
    st.rig.sent.clear();
    for v in st.viewers.iter_mut() {
        v.rtp.clear();
        v.reset_seen();
    }
    st
}

/// Points feedback at the viewer: media SSRC 0 becomes its video SSRC, and
/// NACKed sequence numbers are taken relative to `base`.
fn aim(rtcp: &mut [u8], base: u16) {
    // Both viewers asked for live/a first: the answer's video SSRC is its.
    let video = rts_common::ipc::stream_ssrc("live", "a", 0);
    let mut at = 0;
    while at + 4 <= rtcp.len() {
        let words = u16::from_be_bytes([rtcp[at + 2], rtcp[at + 3]]) as usize;
        let end = (at + 4 + 4 * words).min(rtcp.len());
        let (pt, fmt) = (rtcp[at + 1], rtcp[at] & 0x1f);
        let p = &mut rtcp[at..end];
        let zero = |p: &[u8], i: usize| p.get(i..i + 4).is_some_and(|b| b == [0, 0, 0, 0]);
        match pt {
            205 | 206 if p.len() >= 12 => {
                if zero(p, 8) {
                    p[8..12].copy_from_slice(&video.to_be_bytes());
                }
                if pt == 205 && fmt == 1 {
                    for fci in p[12..].chunks_exact_mut(4) {
                        let pid = u16::from_be_bytes([fci[0], fci[1]]).wrapping_add(base);
                        fci[..2].copy_from_slice(&pid.to_be_bytes());
                    }
                }
            }
            200 | 201 => {
                let first = if pt == 200 { 28 } else { 8 };
                for block in p.get_mut(first..).unwrap_or_default().chunks_exact_mut(24) {
                    if zero(block, 0) {
                        block[..4].copy_from_slice(&video.to_be_bytes());
                    }
                }
            }
            _ => {}
        }
        at = end.max(at + 4);
    }
}


fn check(st: &mut State) {
    for (v, sent) in st.viewers.iter_mut().zip(st.sent.iter_mut()) {
        let before = v.rtp.len();
        // Panics if anything sent to the viewer fails to decrypt.
        v.recv(&st.rig);
        for &(_, seq) in &v.lost {
            sent.insert(seq);
        }
        v.lost.clear();
        // Refused by the receiver's replay window: only a resend of a packet
        // sent long ago may be that old.
        for &(_, seq) in &v.too_old {
            assert!(sent.contains(&seq), "a packet older than the replay window that was never sent: {seq}");
        }
        v.too_old.clear();
        for p in &v.rtp[before..] {
            match p.rtx {
                None => {
                    sent.insert(p.seq);
                }
                Some(_) => assert!(sent.contains(&p.seq), "retransmitted {} which was never sent", p.seq),
            }
        }
        v.rtp.clear();
    }
    st.rig.sent.clear();
    for v in st.viewers.iter_mut() {
        v.reset_seen();
    }
}

// A fresh core per input, so every crash replays from its input alone.
fuzz_target!(|data: &[u8]| {
    let st = &mut setup();
    let mut rest = data;
    while let [tag, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        match tag % 4 {
            0 | 1 => {
                let v = &mut st.viewers[(tag % 4) as usize];
                if !body.is_empty() {
                    let mut rtcp = body.to_vec();
                    aim(&mut rtcp, st.base[(tag % 4) as usize]);
                    v.rtcp(&mut st.rig, &rtcp);
                }
            }
            2 => {
                let step = body.first().copied().unwrap_or(7) as u64;
                st.rig.advance(ms(5 * step));
                st.ts += 33;
                let key = body.get(1).is_some_and(|b| b & 1 == 1);
                let size = 800 + 97 * body.get(2).copied().unwrap_or(9) as usize;
                st.a.video(&mut st.rig, st.ts, frame(key, size, 3));
                st.b.video(&mut st.rig, st.ts, frame(key, size, 4));
            }
            _ => {
                st.on_b = !st.on_b;
                let stream = if st.on_b { "b" } else { "a" };
                let session = st.viewers[0].session;
                st.rig.control(ControlToShard::SwitchStream { session, app: "live".into(), stream: stream.into(), home_shard: None });
            }
        }
        check(st);
    }
});
