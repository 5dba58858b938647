//! Packet-index estimation (RFC 3711 §3.3.1) and the replay window
//! (RFC 3711 §3.3.2).
//!
//! The 48-bit SRTP index is `ROC << 16 | SEQ`. Both directions keep only the
//! highest index seen for an SSRC; ROC and s_l are its upper and lower bits.

use crate::Error;

/// Packets behind the highest index that are still accepted (RFC 3711
/// requires at least 64; 128 tolerates video bursts reordered by pacing).
pub(crate) const WINDOW: u64 = 128;

const MAX_INDEX: u64 = (1 << 48) - 1;

/// Guesses the full index of `seq` relative to the highest index `top`
/// (RFC 3711 §3.3.1): whichever of ROC-1, ROC, ROC+1 puts it closest to s_l.
pub(crate) fn estimate_index(top: u64, seq: u16) -> Result<u64, Error> {
    let roc = top >> 16;
    let s_l = (top & 0xffff) as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1).ok_or(Error::BeforeStart)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    let index = (v << 16) | u64::from(seq);
    if index > MAX_INDEX {
        // 2^48 packets under one master key: RFC 3711 §9.2 requires rekeying.
        return Err(Error::IndexExhausted);
    }
    Ok(index)
}

/// Sliding bitmap of received indices; bit `i` of `mask` is `top - i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) top: u64,
    mask: u128,
}

impl Window {
    /// A window whose first accepted index is `index`.
    pub(crate) fn starting_at(index: u64) -> Self {
        Window {
            top: index,
            mask: 1,
        }
    }

    /// Would `index` be fresh? Must pass before authenticating it, and the
    /// window is only advanced (by [`Window::accept`]) after authentication.
    pub(crate) fn check(&self, index: u64) -> Result<(), Error> {
        if index > self.top {
            return Ok(());
        }
        let behind = self.top - index;
        if behind >= WINDOW {
            return Err(Error::TooOld);
        }
        if self.mask & (1u128 << behind) != 0 {
            return Err(Error::Replay);
        }
        Ok(())
    }

    /// Records an authenticated index.
    pub(crate) fn accept(&mut self, index: u64) {
        if index > self.top {
            let shift = index - self.top;
            self.mask = if shift >= WINDOW {
                0
            } else {
                self.mask << shift
            };
            self.mask |= 1;
            self.top = index;
        } else {
            let behind = self.top - index;
            if behind < WINDOW {
                self.mask |= 1u128 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimation_follows_rfc3711() {
        // In-order and small reorder keep ROC.
        assert_eq!(estimate_index(100, 101), Ok(101));
        assert_eq!(estimate_index(100, 90), Ok(90));
        // Wrap forward: s_l high, seq low.
        assert_eq!(estimate_index(0xfffe, 1), Ok(0x1_0001));
        // Late packet from before the wrap: s_l low, seq high.
        assert_eq!(estimate_index(0x1_0002, 0xfffd), Ok(0xfffd));
        // ... which is impossible at ROC 0.
        assert_eq!(estimate_index(2, 0xfffd), Err(Error::BeforeStart));
        // Jump just under half the space stays in the same ROC.
        assert_eq!(estimate_index(0x8000, 0x0001), Ok(0x0001));
        assert_eq!(estimate_index(0x8001, 0x0000), Ok(0x1_0000));
        assert_eq!(estimate_index(MAX_INDEX, 0), Err(Error::IndexExhausted));
    }

    #[test]
    fn window_rejects_replay_and_old() {
        let mut w = Window::starting_at(1000);
        assert_eq!(w.check(1000), Err(Error::Replay));
        assert_eq!(w.check(1001), Ok(()));
        w.accept(1001);
        assert_eq!(w.check(999), Ok(()));
        w.accept(999);
        assert_eq!(w.check(999), Err(Error::Replay));
        assert_eq!(w.check(998), Ok(()));
        // 1001 - 127 is the oldest slot still covered.
        assert_eq!(w.check(1001 - 127), Ok(()));
        assert_eq!(w.check(1001 - 128), Err(Error::TooOld));
        // A big jump clears the history.
        w.accept(5000);
        assert_eq!(w.check(4999), Ok(()));
        assert_eq!(w.check(5000), Err(Error::Replay));
        assert_eq!(w.check(1001), Err(Error::TooOld));
    }
}
