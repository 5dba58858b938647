//! Fuzz-style robustness: random, truncated, bit-flipped and spliced inputs
//! must never panic in classify / parse / verify. Deterministic PRNG so a
//! failure reproduces.

use rts_stun::{
    classify, write_binding_error, write_binding_request, write_binding_success, BindingRequest,
    PacketKind, StunMessage,
};

/// xorshift64*: tiny, deterministic, good enough to spray bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let tid = [7u8; 12];
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let n = write_binding_success(&tid, "10.1.2.3:4000".parse().unwrap(), b"pw", &mut buf).unwrap();
    out.push(buf[..n].to_vec());
    let n = write_binding_success(&tid, "[::1]:9".parse().unwrap(), b"pw", &mut buf).unwrap();
    out.push(buf[..n].to_vec());
    let n = write_binding_error(&tid, 487, "Role Conflict", Some(b"pw"), &mut buf).unwrap();
    out.push(buf[..n].to_vec());
    let req = BindingRequest {
        transaction_id: tid,
        username: "abcd:efgh",
        priority: 1,
        controlling: Some(2),
        use_candidate: true,
    };
    let n = write_binding_request(&req, b"pw", &mut buf).unwrap();
    out.push(buf[..n].to_vec());
    out
}

fn exercise(d: &[u8]) {
    let kind = classify(d);
    if let Ok(m) = StunMessage::parse(d) {
        // In RFC 7983's STUN range parse is stricter than classify.
        if d[0] <= 3 {
            assert_eq!(kind, PacketKind::Stun);
        }
        let _ = m.verify_integrity(b"pw");
        let _ = m.has_valid_fingerprint();
        if let Some(u) = m.username {
            let _ = rts_stun::split_username(u);
        }
    }
}

#[test]
fn ten_thousand_hostile_inputs_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed_ok = 0;
    for i in 0..10_000 {
        let seed = &seeds[i % seeds.len()];
        let input: Vec<u8> = match i % 5 {
            // Pure noise, with a STUN-ish header half the time.
            0 => {
                let len = rng.below(200);
                let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 8 && rng.below(2) == 0 {
                    v[0] &= 0x3f;
                    v[4..8].copy_from_slice(&rts_stun::MAGIC_COOKIE.to_be_bytes());
                    if len >= 20 {
                        let body = ((len - 20) & !3) as u16;
                        v.truncate(20 + usize::from(body));
                        v[2..4].copy_from_slice(&body.to_be_bytes());
                    }
                }
                v
            }
            // Truncation.
            1 => seed[..rng.below(seed.len() + 1)].to_vec(),
            // Bit flips.
            2 => {
                let mut v = seed.clone();
                for _ in 0..=rng.below(4) {
                    let b = rng.below(v.len() * 8);
                    v[b / 8] ^= 1 << (b % 8);
                }
                v
            }
            // Random byte overwrite inside the attribute area (hits
            // attribute lengths and types more often than bit flips).
            3 => {
                let mut v = seed.clone();
                let at = 20 + rng.below(v.len() - 20);
                v[at] = rng.next() as u8;
                v
            }
            // Append garbage while keeping the header length consistent.
            _ => {
                let mut v = seed.clone();
                for _ in 0..rng.below(5) * 4 {
                    v.push(rng.next() as u8);
                }
                let body = (v.len() - 20) as u16;
                v[2..4].copy_from_slice(&body.to_be_bytes());
                v
            }
        };
        if StunMessage::parse(&input).is_ok() {
            parsed_ok += 1;
        }
        exercise(&input);
    }
    // The corpus must actually reach the attribute parser, not just bounce
    // off the header check.
    assert!(parsed_ok > 500, "only {parsed_ok} inputs parsed");
}
