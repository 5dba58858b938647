//! The wall-clock SEI: `user_data_unregistered` (payload type 5, H.264 D.1.6) carrying our
//! UUID and the UNIX time in microseconds, big-endian. Viewers (the load generator) parse it
//! with [`parse_timestamp_sei`] to measure end-to-end delay.

use crate::annexb::{nal_type, NAL_SEI};

/// UUID that marks our timestamp: ASCII `rts\0SEITIMESTAMP`.
pub const SEI_UUID: [u8; 16] = [
    0x72, 0x74, 0x73, 0x00, 0x53, 0x45, 0x49, 0x54, 0x49, 0x4d, 0x45, 0x53, 0x54, 0x41, 0x4d, 0x50,
];

/// SEI payload type `user_data_unregistered`.
const USER_DATA_UNREGISTERED: u32 = 5;

/// Copies `rbsp` into `out`, inserting `emulation_prevention_three_byte` (0x03) wherever two
/// zero bytes would be followed by a byte ≤ 3 (H.264 7.4.1), so no start code can appear.
pub fn add_emulation_prevention(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Inverse of [`add_emulation_prevention`]: drops each 0x03 that follows two zero bytes.
pub fn remove_emulation_prevention(ebsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Appends a complete SEI NAL unit (header byte included, no start code or length) carrying
/// `unix_us` to `out`.
pub fn write_timestamp_sei(unix_us: u64, out: &mut Vec<u8>) {
    let mut rbsp = [0u8; 2 + 16 + 8 + 1];
    rbsp[0] = USER_DATA_UNREGISTERED as u8;
    rbsp[1] = 24; // payload size: UUID + timestamp
    rbsp[2..18].copy_from_slice(&SEI_UUID);
    rbsp[18..26].copy_from_slice(&unix_us.to_be_bytes());
    rbsp[26] = 0x80; // rbsp_trailing_bits
    out.push(NAL_SEI); // forbidden_zero_bit 0, nal_ref_idc 0, type 6
    add_emulation_prevention(&rbsp, out);
}

/// Reads an SEI `payloadType`/`payloadSize` value: 0xFF bytes summed, then a final byte.
fn read_ff_coded(data: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        v = v.checked_add(u32::from(b))?;
        if b != 0xff {
            return Some(v);
        }
    }
}

/// The timestamp (UNIX µs) if `nal` is an SEI NAL unit containing our
/// `user_data_unregistered` message; `None` for anything else, including malformed SEI.
pub fn parse_timestamp_sei(nal: &[u8]) -> Option<u64> {
    if nal_type(nal) != NAL_SEI {
        return None;
    }
    let mut rbsp = Vec::with_capacity(nal.len());
    remove_emulation_prevention(&nal[1..], &mut rbsp);
    let mut pos = 0;
    // sei_message() repeats until only rbsp_trailing_bits (0x80) remain.
    while pos < rbsp.len() && !(pos + 1 == rbsp.len() && rbsp[pos] == 0x80) {
        let ptype = read_ff_coded(&rbsp, &mut pos)?;
        let size = read_ff_coded(&rbsp, &mut pos)? as usize;
        let payload = rbsp.get(pos..pos.checked_add(size)?)?;
        pos += size;
        if ptype == USER_DATA_UNREGISTERED && size >= 24 && payload[..16] == SEI_UUID {
            let ts: [u8; 8] = payload[16..24].try_into().ok()?;
            return Some(u64::from_be_bytes(ts));
        }
    }
    None
}
