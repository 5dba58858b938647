//! SRTP/SRTCP receive path under a fixed key. The input is one profile byte, then
//! records `op(1) len(u16 BE) bytes`:
//!
//! * op % 4 == 0: the bytes as an SRTP packet into `unprotect_rtp`;
//! * op % 4 == 1: the bytes as an SRTCP packet into `unprotect_rtcp`;
//! * op % 4 == 2: the bytes as a plain RTP packet, protected by a sender context with
//!   the same key and then unprotected (so the fuzzer reaches the decrypt path and the
//!   per-SSRC rollover/replay state);
//! * op % 4 == 3: the same for RTCP.
//!
//! For ops 2/3 with bit 0x80 set, one byte of the protected packet is flipped first
//! (position from the next op byte). Nothing may panic; an untampered round trip that
//! unprotects must give back the plaintext, and a tampered one must never authenticate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rts_srtp::{rtp_header_len, Profile, SrtpContext};

const KEY: [u8; 16] = *b"fuzz-srtp-key-16";
const SALT: [u8; 14] = *b"fuzz-salt-14by";

fuzz_target!(|data: &[u8]| {
    let Some((&p, mut rest)) = data.split_first() else {
        return;
    };
    let profile = if p & 1 == 0 {
        Profile::AeadAes128Gcm
    } else {
        Profile::AesCm128HmacSha1_80
    };
    let salt = &SALT[..profile.master_salt_len()];
    let mut tx = SrtpContext::new(profile, &KEY, salt).expect("valid key");
    let mut rx = SrtpContext::new(profile, &KEY, salt).expect("valid key");
    let mut buf = vec![0u8; 65_536 + 64];
    while let [op, a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        let flip = (*op & 0x80 != 0).then(|| rest.first().copied().unwrap_or(0));
        match op % 4 {
            0 => {
                buf[..len].copy_from_slice(pkt);
                if let Ok(n) = rx.unprotect_rtp(&mut buf[..len]) {
                    assert!(n <= len);
                }
            }
            1 => {
                buf[..len].copy_from_slice(pkt);
                if let Ok(n) = rx.unprotect_rtcp(&mut buf[..len]) {
                    assert!(n <= len);
                }
            }
            2 => {
                let Ok(h) = rtp_header_len(pkt) else { continue };
                let Ok(n) = tx.protect_rtp(&pkt[..h], &pkt[h..], &mut buf) else {
                    continue;
                };
                assert_eq!(n, len + profile.rtp_overhead());
                round_trip(&mut buf[..n], pkt, flip, |b| rx.unprotect_rtp(b));
            }
            _ => {
                let Ok(n) = tx.protect_rtcp(pkt, &mut buf) else {
                    continue;
                };
                assert_eq!(n, len + profile.rtcp_overhead());
                round_trip(&mut buf[..n], pkt, flip, |b| rx.unprotect_rtcp(b));
            }
        }
    }
});

fn round_trip(
    protected: &mut [u8],
    plain: &[u8],
    flip: Option<u8>,
    unprotect: impl FnOnce(&mut [u8]) -> Result<usize, rts_srtp::Error>,
) {
    if let Some(at) = flip {
        let at = usize::from(at) % protected.len();
        protected[at] ^= 0x01;
        assert!(unprotect(protected).is_err(), "tampered packet authenticated");
    } else if let Ok(m) = unprotect(protected) {
        assert_eq!(&protected[..m], plain);
    }
}
