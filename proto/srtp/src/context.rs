//! `SrtpContext`: one direction of one SRTP session, with per-SSRC rollover
//! counters and replay windows.

use crate::header::{rtcp_ssrc, rtp_header_len, rtp_seq_ssrc, RTCP_FIXED};
use crate::kdf::{Kdf, SessionKeys};
use crate::replay::{estimate_index, Window};
use crate::transform::Transform;
use crate::{Error, Profile};

/// SSRCs one context tracks. A viewer has a handful (audio, video, RTX);
/// the bound keeps a misbehaving peer from growing the table. Receive-side
/// entries are only created after a packet authenticates.
pub const MAX_SSRCS: usize = 64;

/// Highest SRTCP index; RFC 3711 §3.4 forbids wrapping under one key.
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

/// Per-SSRC state. For RTP the window's `top` is the highest index
/// (ROC‖s_l); for SRTCP it is the highest SRTCP index received.
#[derive(Clone, Copy, Debug)]
struct Stream {
    ssrc: u32,
    rtp: Option<Window>,
    rtcp: Option<Window>,
}

/// One direction (send *or* receive) of one SRTP session, i.e. one master
/// key. Use one context to protect and a second, built from the remote
/// keys, to unprotect.
///
/// The rollover counter is tracked per SSRC and starts at 0 with the first
/// packet this context sees for that SSRC. That matches what a browser
/// receiver assumes when a viewer joins a stream mid-way, so a fan-out
/// server can share one RTP sequence space across many viewers while every
/// viewer's context counts wraps from its own join point.
pub struct SrtpContext {
    profile: Profile,
    transform: Transform,
    streams: Vec<Stream>,
    next_srtcp_index: u32,
}

impl core::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("ssrcs", &self.streams.len())
            .field("next_srtcp_index", &self.next_srtcp_index)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the six session keys (RFC 3711 §4.3, kdr = 0) and prepares
    /// the cipher/MAC key schedules once, so the per-packet path does no
    /// key setup.
    pub fn new(profile: Profile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, Error> {
        if master_key.len() != profile.master_key_len() {
            return Err(Error::KeyLength {
                what: "master key",
                expected: profile.master_key_len(),
                got: master_key.len(),
            });
        }
        if master_salt.len() != profile.master_salt_len() {
            return Err(Error::KeyLength {
                what: "master salt",
                expected: profile.master_salt_len(),
                got: master_salt.len(),
            });
        }
        let kdf = Kdf::new(master_key, master_salt)?;
        let salt_len = profile.master_salt_len();
        let rtp = kdf.session_keys(false, salt_len)?;
        let rtcp = kdf.session_keys(true, salt_len)?;
        Self::with_session_keys(profile, &rtp, &rtcp)
    }

    /// Builds a context from already-derived session keys (RFC 7714's test
    /// vectors are given at this level).
    pub(crate) fn with_session_keys(
        profile: Profile,
        rtp: &SessionKeys,
        rtcp: &SessionKeys,
    ) -> Result<Self, Error> {
        Ok(SrtpContext {
            profile,
            transform: Transform::new(profile, rtp, rtcp)?,
            streams: Vec::new(),
            next_srtcp_index: 0,
        })
    }

    /// The profile this context was created with.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    /// Reserves room for a new SSRC before doing any crypto for it.
    fn check_capacity(&self, slot: Option<usize>) -> Result<(), Error> {
        if slot.is_none() && self.streams.len() >= MAX_SSRCS {
            return Err(Error::TooManySsrcs);
        }
        Ok(())
    }

    fn record(&mut self, slot: Option<usize>, ssrc: u32, rtcp: bool, index: u64) {
        let i = slot.unwrap_or_else(|| {
            self.streams.push(Stream {
                ssrc,
                rtp: None,
                rtcp: None,
            });
            self.streams.len() - 1
        });
        let w = if rtcp {
            &mut self.streams[i].rtcp
        } else {
            &mut self.streams[i].rtp
        };
        match w {
            Some(w) => w.accept(index),
            None => *w = Some(Window::starting_at(index)),
        }
    }

    /// Hot path. Writes `header‖payload‖tag` into `out` and encrypts in
    /// place; returns the bytes written.
    ///
    /// `header` must be exactly the RTP header (including CSRCs and header
    /// extension) and `payload` the rest. `out` must hold at least
    /// `header.len() + payload.len() + profile.rtp_overhead()` bytes. The
    /// ROC for the SSRC starts at 0 on its first packet and follows the
    /// sequence number across wraps (retransmissions of older sequence
    /// numbers reuse the ROC they were first sent with).
    ///
    /// Re-protecting the same SSRC and sequence number is allowed so NACK
    /// retransmissions work, but it must carry the same payload: with GCM a
    /// different payload under a reused index reuses the nonce.
    pub fn protect_rtp(
        &mut self,
        header: &[u8],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        self.protect_rtp_padded(header, &[], payload, 0, out)
    }

    /// [`SrtpContext::protect_rtp`] for a payload in two parts (`lead`,
    /// e.g. RTX's original sequence number, then `body`, so the caller
    /// need not join them) followed by `pad` bytes of RTP padding (RFC
    /// 3550 §5.1: zeros, the last byte the count), which the header's P
    /// bit must announce when `pad > 0`.
    ///
    /// Padding changes the plaintext: a packet sent padded must never be
    /// protected again under the same SSRC and sequence number with other
    /// padding (see above); RTX packets, numbered afresh each time, can
    /// always be padded.
    #[inline(always)]
    pub fn protect_rtp_padded(
        &mut self,
        header: &[u8],
        lead: &[u8],
        body: &[u8],
        pad: u8,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let hdr_len = rtp_header_len(header)?;
        if hdr_len != header.len() {
            return Err(Error::HeaderMismatch {
                got: header.len(),
                parsed: hdr_len,
            });
        }
        if pad > 0 && header[0] & 0x20 == 0 {
            return Err(Error::PaddingFlag);
        }
        let payload_end = hdr_len + lead.len() + body.len();
        let plain_len = payload_end + usize::from(pad);
        let needed = plain_len + self.profile.rtp_overhead();
        if out.len() < needed {
            return Err(Error::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let (seq, ssrc) = rtp_seq_ssrc(header);
        let slot = self.find(ssrc);
        self.check_capacity(slot)?;
        let index = match slot.and_then(|i| self.streams[i].rtp) {
            Some(w) => estimate_index(w.top, seq)?,
            None => u64::from(seq),
        };
        out[..hdr_len].copy_from_slice(header);
        out[hdr_len..hdr_len + lead.len()].copy_from_slice(lead);
        out[hdr_len + lead.len()..payload_end].copy_from_slice(body);
        if pad > 0 {
            out[payload_end..plain_len - 1].fill(0);
            out[plain_len - 1] = pad;
        }
        let n = self
            .transform
            .seal_rtp(&mut out[..needed], hdr_len, plain_len, ssrc, index)?;
        self.record(slot, ssrc, false, index);
        Ok(n)
    }

    /// Authenticates and decrypts an SRTP packet in place; returns the
    /// plaintext length (header‖payload). Rejects replays and packets older
    /// than the 128-packet window. On error the packet bytes may have been
    /// modified and must be dropped; context state is untouched.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, Error> {
        let hdr_len = rtp_header_len(packet)?;
        if packet.len() < hdr_len + self.profile.rtp_overhead() {
            return Err(Error::Truncated);
        }
        let (seq, ssrc) = rtp_seq_ssrc(packet);
        let slot = self.find(ssrc);
        self.check_capacity(slot)?;
        let index = match slot.and_then(|i| self.streams[i].rtp) {
            Some(w) => {
                let index = estimate_index(w.top, seq).map_err(|e| match e {
                    Error::BeforeStart => Error::TooOld,
                    e => e,
                })?;
                w.check(index)?;
                index
            }
            None => u64::from(seq),
        };
        let n = self.transform.open_rtp(packet, hdr_len, ssrc, index)?;
        self.record(slot, ssrc, false, index);
        Ok(n)
    }

    /// Protects a (compound) RTCP packet into `out` (at least
    /// `packet.len() + profile.rtcp_overhead()` bytes); returns bytes
    /// written. The SRTCP index is one counter per context, starting at 0.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let ssrc = rtcp_ssrc(packet)?;
        let needed = packet.len() + self.profile.rtcp_overhead();
        if out.len() < needed {
            return Err(Error::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let index = self.next_srtcp_index;
        if index > MAX_SRTCP_INDEX {
            return Err(Error::IndexExhausted);
        }
        out[..packet.len()].copy_from_slice(packet);
        let n = self
            .transform
            .seal_rtcp(&mut out[..needed], packet.len(), ssrc, index)?;
        self.next_srtcp_index = index + 1;
        Ok(n)
    }

    /// Authenticates and (if the E flag is set) decrypts an SRTCP packet in
    /// place; returns the RTCP length. Replay protection is per sender SSRC,
    /// because peers (libsrtp) keep one SRTCP index per stream.
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, Error> {
        let ssrc = rtcp_ssrc(packet)?;
        if packet.len() < RTCP_FIXED + self.profile.rtcp_overhead() {
            return Err(Error::Truncated);
        }
        let (encrypted, index) = self.transform.rtcp_trailer(packet);
        let slot = self.find(ssrc);
        self.check_capacity(slot)?;
        if let Some(w) = slot.and_then(|i| self.streams[i].rtcp) {
            w.check(u64::from(index))?;
        }
        let n = self.transform.open_rtcp(packet, ssrc, encrypted, index)?;
        self.record(slot, ssrc, true, u64::from(index));
        Ok(n)
    }

    /// Sets the next SRTCP index to send (tests and interop vectors only).
    #[cfg(test)]
    pub(crate) fn set_next_srtcp_index(&mut self, index: u32) {
        self.next_srtcp_index = index;
    }
}
