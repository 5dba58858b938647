//! `scripts/fuzz.sh` target `dataplane:media_request`: arbitrary bytes from
//! media-listener clients (HTTP-FLV and LL-HLS requests, garbage, heads split at any
//! point, slow readers) into the sans-IO core while a stream is published.
//! Nothing may panic; every connection's output must begin with an HTTP/1.1
//! status line; a connection the core closed gets nothing after the close.
//!
//! Input: commands of a tag byte and a length-prefixed body. Tag % 4:
//! 0 = bytes on connection body[0] % 4 (opened on first use), 1 = that
//! connection closes, 2 = time passes (body[0] × 10 ms) and a frame is
//! published (keyframe when body[1] is odd; body[2] × 256 bytes), 3 = the
//! shell reports body[1] × 4 KiB written on connection body[0] % 4.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_dataplane::testkit::{frame, ms, publish, Rig};
use std::collections::{HashMap, HashSet};

fuzz_target!(|data: &[u8]| {
    let mut rig = Rig::new("");
    let mut p = publish(&mut rig, 1, "live", "s", 2);
    // Every media connection reads nothing unless the input says so.
    for c in 100..104 {
        rig.stalled.insert(c);
    }
    let mut open: HashSet<usize> = HashSet::new();
    // Connections closed by either side, with their output at the close
    // (ids are not reused).
    let mut dead: HashMap<usize, usize> = HashMap::new();
    let mut ts = 100u32;
    let mut i = 0;
    while i + 2 <= data.len() {
        let (tag, len) = (data[i], data[i + 1] as usize);
        let body = &data[(i + 2).min(data.len())..(i + 2 + len).min(data.len())];
        i += 2 + len;
        let b = |k: usize| body.get(k).copied().unwrap_or(0);
        let conn = 100 + (b(0) % 4) as usize;
        match tag % 4 {
            0 if dead.contains_key(&conn) => {}
            0 => {
                if open.insert(conn) {
                    rig.core.handle_http_open(rig.now, conn, None);
                    rig.drain();
                }
                rig.core.handle_tcp_data(rig.now, conn, body.get(1..).unwrap_or(&[]));
                rig.drain();
            }
            1 => {
                if open.remove(&conn) {
                    rig.core.handle_tcp_closed(rig.now, conn, "fuzz");
                    rig.drain();
                    dead.entry(conn).or_insert_with(|| rig.tcp.get(&conn).map_or(0, Vec::len));
                }
            }
            2 => {
                rig.advance(ms(u64::from(b(0)) * 10));
                ts += u32::from(b(0)) * 10;
                p.video(&mut rig, ts, frame(b(1) % 2 == 1, 16 + usize::from(b(2)) * 256, b(3)));
            }
            _ => {
                rig.core.handle_tcp_written(conn, usize::from(b(1)) * 4096);
                rig.drain();
            }
        }
        for &c in &rig.closed {
            dead.entry(c).or_insert_with(|| rig.tcp.get(&c).map_or(0, Vec::len));
        }
    }
    for (conn, len) in &dead {
        assert_eq!(rig.tcp.get(conn).map_or(0, Vec::len), *len, "connection {conn} got output after its close");
    }
    for (conn, out) in &rig.tcp {
        assert!(out.starts_with(b"HTTP/1.1 "), "connection {conn} output starts with {:?}", &out[..out.len().min(16)]);
    }
});
