//! The latency stamp: a `user_data_unregistered` SEI (H.264 NAL type 6,
//! payload type 5) carrying our UUID and the publisher's wall clock.
//!
//! `tools/publish` writes it into every frame it encodes; the load generator
//! subtracts it from the arrival time of the frame's last packet to get the
//! end-to-end delay (both clocks are this machine's, or NTP-synced hosts).

/// UUID of the timestamp SEI ("rts\0SEITIMESTAMP").
pub const TIMESTAMP_UUID: [u8; 16] = [
    0x72, 0x74, 0x73, 0x00, 0x53, 0x45, 0x49, 0x54, 0x49, 0x4d, 0x45, 0x53, 0x54, 0x41, 0x4d, 0x50,
];

const NAL_SEI: u8 = 6;
const PAYLOAD_USER_DATA_UNREGISTERED: u32 = 5;

/// Finds the timestamp SEI among a frame's NAL units (without start codes)
/// and returns its UNIX time in microseconds. `None` when there is none or
/// it is malformed: a stream without stamps is normal, not an error.
pub fn find_timestamp<N: AsRef<[u8]>>(nalus: &[N]) -> Option<u64> {
    nalus.iter().find_map(|n| {
        let n = n.as_ref();
        (n.first().map(|b| b & 0x1f) == Some(NAL_SEI))
            .then(|| parse_sei_rbsp(&unescape(&n[1..])))
            .flatten()
    })
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`, H.264 §7.4.1).
/// Only SEI NALs go through here, so the allocation is not per packet.
fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Whether a frame's NAL units carry user data (a `user_data_unregistered`
/// SEI message, any UUID): what live commerce syncs product cards with.
pub fn has_user_data<N: AsRef<[u8]>>(nalus: &[N]) -> bool {
    nalus.iter().any(|n| {
        let n = n.as_ref();
        n.first().map(|b| b & 0x1f) == Some(NAL_SEI)
            && walk_sei_rbsp(&unescape(&n[1..]), |ty, _| (ty == PAYLOAD_USER_DATA_UNREGISTERED).then_some(())).is_some()
    })
}

/// Our timestamp in an SEI RBSP.
fn parse_sei_rbsp(rbsp: &[u8]) -> Option<u64> {
    walk_sei_rbsp(rbsp, |ty, payload| {
        (ty == PAYLOAD_USER_DATA_UNREGISTERED && payload.len() >= 24 && payload[..16] == TIMESTAMP_UUID).then(|| {
            let mut be = [0u8; 8];
            be.copy_from_slice(&payload[16..24]);
            u64::from_be_bytes(be)
        })
    })
}

/// Walks the sei_message()s of an SEI RBSP (H.264 §7.3.2.3) until `found`
/// returns something for a (payloadType, payload).
fn walk_sei_rbsp<T>(rbsp: &[u8], mut found: impl FnMut(u32, &[u8]) -> Option<T>) -> Option<T> {
    let mut at = 0;
    // More messages follow while something other than the trailing-bits byte remains.
    while at < rbsp.len() && rbsp[at..] != [0x80] {
        let (ty, n) = read_ff_coded(&rbsp[at..])?;
        at += n;
        let (size, n) = read_ff_coded(&rbsp[at..])?;
        at += n;
        let payload = rbsp.get(at..at.checked_add(usize::try_from(size).ok()?)?)?;
        if let Some(t) = found(ty, payload) {
            return Some(t);
        }
        at += payload.len();
    }
    None
}

/// payloadType / payloadSize: a run of 0xFF bytes (255 each) plus a final byte.
fn read_ff_coded(b: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, &byte) in b.iter().enumerate() {
        value = value.checked_add(u32::from(byte))?;
        if byte != 0xff {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an SEI NAL the way tools/publish does, with emulation prevention.
    pub(crate) fn sei_nal(stamp: u64, lead: &[u8]) -> Vec<u8> {
        let mut rbsp = lead.to_vec();
        rbsp.push(5);
        rbsp.push(24);
        rbsp.extend_from_slice(&TIMESTAMP_UUID);
        rbsp.extend_from_slice(&stamp.to_be_bytes());
        rbsp.push(0x80);
        let mut nal = vec![0x06];
        let mut zeros = 0;
        for b in rbsp {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    #[test]
    fn finds_stamp_after_other_nals() {
        let stamp = 1_700_000_000_123_456u64;
        let nalus = vec![vec![0x09, 0xf0], sei_nal(stamp, &[]), vec![0x65, 0x88, 0x84]];
        assert_eq!(find_timestamp(&nalus), Some(stamp));
    }

    #[test]
    fn emulation_prevention_is_removed() {
        // Zero bytes in the stamp force 00 00 03 escapes into the NAL.
        let stamp = 0x0000_0000_0000_0102u64;
        let nal = sei_nal(stamp, &[]);
        assert!(nal.windows(3).any(|w| w == [0, 0, 3]), "test vector must contain an escape");
        assert_eq!(find_timestamp(&[nal]), Some(stamp));
    }

    #[test]
    fn user_data_of_any_uuid_is_seen() {
        // A recovery-point SEI alone (payloadType 6) is not user data.
        assert!(!has_user_data(&[vec![0x06, 0x06, 0x01, 0x84, 0x80]]));
        // payloadType 5, size 17: a foreign UUID and one byte, after a recovery point.
        let mut nal = vec![0x06, 0x06, 0x01, 0x84, 0x05, 17];
        nal.extend_from_slice(&[0x11; 16]);
        nal.extend_from_slice(&[0x42, 0x80]);
        assert!(has_user_data(&[vec![0x09, 0xf0], nal]));
        assert!(!has_user_data(&[vec![0x65, 0x88]]));
    }

    #[test]
    fn skips_other_sei_messages() {
        // A recovery-point SEI (type 6, 1 byte) before ours; and a foreign UUID is ignored.
        let stamp = 42_000_000u64;
        assert_eq!(find_timestamp(&[sei_nal(stamp, &[6, 1, 0x84])]), Some(stamp));
        let mut foreign = sei_nal(stamp, &[]);
        foreign[3] ^= 0xff; // first UUID byte
        assert_eq!(find_timestamp(&[foreign]), None);
    }

    #[test]
    fn malformed_or_absent_is_none() {
        assert_eq!(find_timestamp::<Vec<u8>>(&[]), None);
        assert_eq!(find_timestamp(&[vec![0x06]]), None);
        assert_eq!(find_timestamp(&[vec![0x06, 5, 200, 0x72]]), None); // size beyond the NAL
        assert_eq!(find_timestamp(&[vec![0x06, 0xff, 0xff]]), None); // unterminated type
        assert_eq!(find_timestamp(&[vec![0x65, 5, 24]]), None); // not an SEI
    }
}
