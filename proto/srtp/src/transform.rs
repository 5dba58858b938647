//! The two packet transforms, with all key schedules prepared up front so
//! the per-packet path does no allocation and no key expansion.
//!
//! Layouts (tag and E‖index placement) follow RFC 3711 §3.1/§3.4 for AES-CM
//! and RFC 7714 §8/§9 for AES-GCM.

// AES-GCM from ring: its VAES/VPCLMULQDQ AVX2 code path (BoringSSL's) seals
// a 1,200-byte packet in ~273 ns on the EPYC dev box, against ~437 ns for
// aws-lc's AES-NI path (docs/decisions/003). AES-CM/HMAC stays on aws-lc,
// which ring lacks (no raw AES-CTR).
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use crate::header::RTCP_FIXED;
use crate::kdf::SessionKeys;
use crate::{Error, Profile};

const GCM_TAG: usize = 16;
const CM_TAG: usize = 10;
/// The E flag of the SRTCP trailer word: payload is encrypted.
const E_FLAG: u32 = 0x8000_0000;

/// Prepared AES-CM + HMAC-SHA1 keys for one of RTP/RTCP.
pub(crate) struct CmKeys {
    ctr: EncryptingKey,
    salt: [u8; 14],
    auth: hmac::Key,
}

impl CmKeys {
    fn new(k: &SessionKeys) -> Result<Self, Error> {
        Ok(CmKeys {
            ctr: EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &k.key)?)?,
            salt: k.salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &k.auth),
        })
    }

    /// AES-CM keystream XOR (RFC 3711 §4.1.1):
    /// IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16).
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) -> Result<(), Error> {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        xor_into(&mut iv[4..8], &ssrc.to_be_bytes());
        xor_into(&mut iv[8..14], &index.to_be_bytes()[2..]);
        self.ctr
            .less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))?;
        Ok(())
    }

    /// HMAC-SHA1 over `parts`, truncated to 80 bits.
    fn tag(&self, parts: &[&[u8]]) -> [u8; CM_TAG] {
        let mut ctx = hmac::Context::with_key(&self.auth);
        for p in parts {
            ctx.update(p);
        }
        let full = ctx.sign();
        let mut out = [0u8; CM_TAG];
        out.copy_from_slice(&full.as_ref()[..CM_TAG]);
        out
    }
}

/// Prepared AES-GCM key and salt for one of RTP/RTCP.
pub(crate) struct GcmKeys {
    aead: LessSafeKey,
    salt: [u8; 12],
}

impl GcmKeys {
    fn new(k: &SessionKeys) -> Result<Self, Error> {
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&k.salt[..12]);
        Ok(GcmKeys {
            aead: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &k.key)?),
            salt,
        })
    }

    /// RFC 7714 §8.1 (RTP: `00 00 | SSRC | ROC | SEQ`, i.e. the 48-bit index
    /// in octets 6..12) and §9.1 (RTCP: `00 00 | SSRC | 00 00 | 0 | index`,
    /// the 31-bit index in octets 8..12), each XORed with the salt.
    fn nonce(&self, ssrc: u32, index: u64, rtcp: bool) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        if rtcp {
            iv[8..12].copy_from_slice(&index.to_be_bytes()[4..]);
        } else {
            iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        }
        xor_into(&mut iv, &self.salt);
        Nonce::assume_unique_for_key(iv)
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// The prepared keys of one profile. CM keys are boxed: aws-lc's HMAC
/// context embeds the SHA-1 pad states (~1.7 KiB each), and boxing keeps
/// `SrtpContext` small to move while costing one allocation per context.
// GCM keys stay inline (≈ 1.1 KiB with ring's expanded key schedule): the hot
// path then reads them without a pointer chase; CM's bigger HMAC state is
// boxed. One context per viewer direction, so the size is fine.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform {
    Gcm { rtp: GcmKeys, rtcp: GcmKeys },
    Cm { rtp: Box<CmKeys>, rtcp: Box<CmKeys> },
}

impl Transform {
    pub(crate) fn new(
        profile: Profile,
        rtp: &SessionKeys,
        rtcp: &SessionKeys,
    ) -> Result<Self, Error> {
        Ok(match profile {
            Profile::AeadAes128Gcm => Transform::Gcm {
                rtp: GcmKeys::new(rtp)?,
                rtcp: GcmKeys::new(rtcp)?,
            },
            Profile::AesCm128HmacSha1_80 => Transform::Cm {
                rtp: Box::new(CmKeys::new(rtp)?),
                rtcp: Box::new(CmKeys::new(rtcp)?),
            },
        })
    }

    /// `buf[..plain_len]` holds header‖payload; encrypts the payload in place
    /// and writes the tag right after it. `buf` must have room for the tag.
    pub(crate) fn seal_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        plain_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, Error> {
        match self {
            Transform::Gcm { rtp, .. } => {
                let (aad, rest) = buf.split_at_mut(hdr_len);
                let (body, tail) = rest.split_at_mut(plain_len - hdr_len);
                let tag = rtp.aead.seal_in_place_separate_tag(
                    rtp.nonce(ssrc, index, false),
                    Aad::from(&*aad),
                    body,
                )?;
                tail[..GCM_TAG].copy_from_slice(tag.as_ref());
                Ok(plain_len + GCM_TAG)
            }
            Transform::Cm { rtp, .. } => {
                rtp.apply_keystream(ssrc, index, &mut buf[hdr_len..plain_len])?;
                // RFC 3711 §4.2: the authenticated portion is followed by the ROC.
                let roc = ((index >> 16) as u32).to_be_bytes();
                let (authed, tail) = buf.split_at_mut(plain_len);
                tail[..CM_TAG].copy_from_slice(&rtp.tag(&[authed, &roc]));
                Ok(plain_len + CM_TAG)
            }
        }
    }

    /// Authenticates and decrypts the whole SRTP packet in `buf` in place;
    /// returns the plaintext (header‖payload) length. Caller checked that
    /// `buf.len() >= hdr_len + tag`.
    pub(crate) fn open_rtp(
        &self,
        buf: &mut [u8],
        hdr_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, Error> {
        match self {
            Transform::Gcm { rtp, .. } => {
                let (aad, rest) = buf.split_at_mut(hdr_len);
                let plain = rtp
                    .aead
                    .open_in_place(rtp.nonce(ssrc, index, false), Aad::from(&*aad), rest)
                    .map_err(|_| Error::AuthFailed)?;
                Ok(hdr_len + plain.len())
            }
            Transform::Cm { rtp, .. } => {
                let plain_len = buf.len() - CM_TAG;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let (authed, tag) = buf.split_at_mut(plain_len);
                // Verify before decrypting so a forged packet leaves `buf` intact.
                verify_slices_are_equal(&rtp.tag(&[authed, &roc]), tag)
                    .map_err(|_| Error::AuthFailed)?;
                rtp.apply_keystream(ssrc, index, &mut authed[hdr_len..])?;
                Ok(plain_len)
            }
        }
    }

    /// `buf[..plain_len]` holds a compound RTCP packet; encrypts it after the
    /// 8-byte clear prefix and appends the trailer in the profile's order
    /// (GCM: tag‖E‖index, CM: E‖index‖tag). Always sets E.
    pub(crate) fn seal_rtcp(
        &self,
        buf: &mut [u8],
        plain_len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, Error> {
        let e_index = (E_FLAG | index).to_be_bytes();
        match self {
            Transform::Gcm { rtcp, .. } => {
                // RFC 7714 §9.2: AAD = clear prefix ‖ E‖index.
                let mut aad = [0u8; RTCP_FIXED + 4];
                aad[..RTCP_FIXED].copy_from_slice(&buf[..RTCP_FIXED]);
                aad[RTCP_FIXED..].copy_from_slice(&e_index);
                let (body, tail) = buf[RTCP_FIXED..].split_at_mut(plain_len - RTCP_FIXED);
                let tag = rtcp.aead.seal_in_place_separate_tag(
                    rtcp.nonce(ssrc, u64::from(index), true),
                    Aad::from(&aad),
                    body,
                )?;
                tail[..GCM_TAG].copy_from_slice(tag.as_ref());
                tail[GCM_TAG..GCM_TAG + 4].copy_from_slice(&e_index);
                Ok(plain_len + GCM_TAG + 4)
            }
            Transform::Cm { rtcp, .. } => {
                rtcp.apply_keystream(ssrc, u64::from(index), &mut buf[RTCP_FIXED..plain_len])?;
                buf[plain_len..plain_len + 4].copy_from_slice(&e_index);
                let (authed, tail) = buf.split_at_mut(plain_len + 4);
                tail[..CM_TAG].copy_from_slice(&rtcp.tag(&[authed]));
                Ok(plain_len + 4 + CM_TAG)
            }
        }
    }

    /// Reads the (E flag, SRTCP index) trailer word. Caller checked the
    /// packet holds at least the clear prefix plus the profile's overhead.
    pub(crate) fn rtcp_trailer(&self, buf: &[u8]) -> (bool, u32) {
        let at = match self {
            Transform::Gcm { .. } => buf.len() - 4,
            Transform::Cm { .. } => buf.len() - CM_TAG - 4,
        };
        let w = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        (w & E_FLAG != 0, w & !E_FLAG)
    }

    /// Authenticates (and, if E is set, decrypts) the SRTCP packet in `buf`
    /// in place; returns the RTCP length.
    pub(crate) fn open_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        encrypted: bool,
        index: u32,
    ) -> Result<usize, Error> {
        match self {
            Transform::Gcm { rtcp, .. } => {
                let plain_len = buf.len() - GCM_TAG - 4;
                let nonce = rtcp.nonce(ssrc, u64::from(index), true);
                if encrypted {
                    let mut aad = [0u8; RTCP_FIXED + 4];
                    aad[..RTCP_FIXED].copy_from_slice(&buf[..RTCP_FIXED]);
                    aad[RTCP_FIXED..].copy_from_slice(&buf[plain_len + GCM_TAG..]);
                    rtcp.aead
                        .open_in_place(
                            nonce,
                            Aad::from(&aad),
                            &mut buf[RTCP_FIXED..plain_len + GCM_TAG],
                        )
                        .map_err(|_| Error::AuthFailed)?;
                } else {
                    // RFC 7714 §9.2, E = 0: AAD is the whole RTCP packet ‖ E‖index,
                    // with the tag after it. Rotate the trailer to tag-last so the
                    // AAD is contiguous without a copy; no allocation.
                    buf[plain_len..].rotate_right(4);
                    let (aad, tag) = buf.split_at_mut(plain_len + 4);
                    let tag = Tag::try_from(&*tag).map_err(|_| Error::AuthFailed)?;
                    rtcp.aead
                        .open_in_place_separate_tag(nonce, Aad::from(&*aad), tag, &mut [], 0..)
                        .map_err(|_| Error::AuthFailed)?;
                }
                Ok(plain_len)
            }
            Transform::Cm { rtcp, .. } => {
                let authed_len = buf.len() - CM_TAG;
                let (authed, tag) = buf.split_at_mut(authed_len);
                verify_slices_are_equal(&rtcp.tag(&[authed]), tag)
                    .map_err(|_| Error::AuthFailed)?;
                let plain_len = authed_len - 4;
                if encrypted {
                    rtcp.apply_keystream(
                        ssrc,
                        u64::from(index),
                        &mut authed[RTCP_FIXED..plain_len],
                    )?;
                }
                Ok(plain_len)
            }
        }
    }
}
