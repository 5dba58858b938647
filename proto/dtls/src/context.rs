//! Shared, immutable OpenSSL configuration built once per process (or per role):
//! parsing cipher strings and loading the certificate is too costly to repeat for
//! every viewer's handshake.

use openssl::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};

use crate::{DtlsCert, Error};

/// Which side of the handshake an endpoint plays. In WebRTC the SDP `a=setup`
/// attribute decides; the rts server answers `setup:passive`, i.e. [`Role::Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waits for the ClientHello.
    Server,
    /// Sends the ClientHello from [`crate::DtlsEndpoint::start`].
    Client,
}

/// DTLS-SRTP protection profiles (RFC 5764 §4.1.2, RFC 7714 §14.2) this crate negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// `SRTP_AEAD_AES_128_GCM` (0x0007): preferred, one AES pass with built-in auth.
    AeadAes128Gcm,
    /// `SRTP_AES128_CM_SHA1_80` (0x0001): mandatory-to-implement fallback.
    Aes128CmSha1_80,
}

impl SrtpProfile {
    /// IANA profile id, as in [`crate::SrtpExport::profile_id`].
    pub fn id(self) -> u16 {
        match self {
            Self::AeadAes128Gcm => crate::PROFILE_AEAD_AES_128_GCM,
            Self::Aes128CmSha1_80 => crate::PROFILE_AES128_CM_SHA1_80,
        }
    }

    fn openssl_name(self) -> &'static str {
        match self {
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::Aes128CmSha1_80 => "SRTP_AES128_CM_SHA1_80",
        }
    }
}

/// ECDSA suites only (our certificate is ECDSA); AES-128-GCM first: it is what
/// browsers pick and what AES-NI makes cheapest.
const CIPHERS: &str =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";
/// X25519 is the fastest key exchange; P-256 for peers without it.
const GROUPS: &str = "X25519:P-256:P-384";

/// A configured OpenSSL context plus the role its endpoints take.
/// Cheap to clone and `Send + Sync`: share one across all sessions.
#[derive(Clone)]
pub struct DtlsContext {
    pub(crate) ssl: SslContext,
    pub(crate) role: Role,
}

impl DtlsContext {
    /// Context offering both SRTP profiles, AEAD_AES_128_GCM preferred.
    pub fn new(cert: &DtlsCert, role: Role) -> Result<Self, Error> {
        Self::with_srtp_profiles(cert, role, &[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmSha1_80])
    }

    /// Context offering exactly `profiles`, in preference order (a client uses this to
    /// force a profile; OpenSSL servers pick by their own order among the client's offers).
    pub fn with_srtp_profiles(
        cert: &DtlsCert,
        role: Role,
        profiles: &[SrtpProfile],
    ) -> Result<Self, Error> {
        if profiles.is_empty() {
            return Err(Error::Malformed("no SRTP profile configured"));
        }
        let mut b = SslContextBuilder::new(SslMethod::dtls())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_cipher_list(CIPHERS)?;
        b.set_groups_list(GROUPS)?;
        b.set_certificate(&cert.cert)?;
        b.set_private_key(&cert.key)?;
        b.check_private_key()?;
        let names: Vec<&str> = profiles.iter().map(|p| p.openssl_name()).collect();
        b.set_tlsext_use_srtp(&names.join(":"))?;
        // Require a peer certificate (its fingerprint is the peer's identity) but accept
        // any self-signed one: the caller compares the fingerprint with the SDP.
        b.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, |_, _| true);
        // NO_QUERY_MTU: the MTU is set per endpoint, there is no socket to ask.
        // No cookie exchange: ICE connectivity checks already proved the peer's address,
        // a HelloVerifyRequest would only cost a round trip. No resumption: every
        // WebRTC session has a fresh handshake, caches would only hold memory.
        b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        b.clear_options(SslOptions::COOKIE_EXCHANGE);
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        Ok(Self { ssl: b.build(), role })
    }

    /// The role endpoints built from this context take.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl std::fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsContext").field("role", &self.role).finish_non_exhaustive()
    }
}
