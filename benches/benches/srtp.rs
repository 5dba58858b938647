//! ns per `SrtpContext::protect_rtp` on the fan-out hot path: one call per
//! viewer per packet. Video-sized (1,200-byte) and Opus-sized (100-byte)
//! payloads, 12-byte header, both profiles. Results feed
//! docs/decisions/003-srtp-implementation.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rts_srtp::{Profile, SrtpContext};

fn protect_rtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_protect_rtp");
    for profile in [Profile::AeadAes128Gcm, Profile::AesCm128HmacSha1_80] {
        for payload_len in [1200usize, 100] {
            let key = [0x42u8; 16];
            let salt = vec![0x24u8; profile.master_salt_len()];
            let mut ctx = SrtpContext::new(profile, &key, &salt).expect("context");
            let mut header = [0u8; 12];
            header[0] = 0x80;
            header[1] = 96;
            header[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            let payload = vec![0xa5u8; payload_len];
            let mut out = vec![0u8; 12 + payload_len + profile.rtp_overhead()];
            let mut seq: u16 = 0;
            group.throughput(Throughput::Bytes(payload_len as u64));
            group.bench_function(BenchmarkId::new(format!("{profile:?}"), payload_len), |b| {
                b.iter(|| {
                    // Advance the sequence number like a live stream (and
                    // exercise the ROC wrap every 65,536 iterations).
                    seq = seq.wrapping_add(1);
                    header[2..4].copy_from_slice(&seq.to_be_bytes());
                    let n = ctx
                        .protect_rtp(black_box(&header), black_box(&payload), &mut out)
                        .expect("protect");
                    black_box(n)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, protect_rtp);
criterion_main!(benches);
