//! NTP timestamps for RTCP sender reports.

/// Seconds from the NTP epoch (1900-01-01) to the UNIX epoch (1970-01-01).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Converts a UNIX time in microseconds to a 64-bit NTP timestamp
/// (32.32 fixed point, seconds since 1900), as carried in an RTCP SR.
///
/// The seconds part wraps modulo 2^32 (NTP era rollover in 2036), which is
/// what receivers expect: they only ever use the middle 32 bits (LSR).
pub fn unix_micros_to_ntp(us: u64) -> u64 {
    let secs = (us / 1_000_000).wrapping_add(NTP_UNIX_OFFSET_SECS) & 0xffff_ffff;
    // < 1_000_000 << 32 fits easily in u64.
    let frac = ((us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_maps_to_ntp_offset() {
        assert_eq!(unix_micros_to_ntp(0), NTP_UNIX_OFFSET_SECS << 32);
    }

    #[test]
    fn half_second_is_half_fraction() {
        let ntp = unix_micros_to_ntp(1_500_000);
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(ntp & 0xffff_ffff, 0x8000_0000);
    }

    #[test]
    fn known_date() {
        // 2024-01-01T00:00:00Z = 1704067200 UNIX = 3913056000 NTP seconds.
        let ntp = unix_micros_to_ntp(1_704_067_200_000_000 + 250_000);
        assert_eq!(ntp >> 32, 3_913_056_000);
        assert_eq!(ntp & 0xffff_ffff, 0x4000_0000);
    }
}
