//! One DTLS session driven without I/O: datagrams and time in, datagrams,
//! events and a timer deadline out.

use std::collections::VecDeque;
use std::time::Instant;

use openssl::error::ErrorStack;
use openssl::ssl::{ErrorCode, Ssl, SslStream};

use crate::ffi::{self, TimeoutOutcome};
use crate::io::DatagramIo;
use crate::{fingerprint, record, DtlsContext, Error, Role, SrtpExport, EXPORTER_LABEL};

/// Largest datagram produced: flights are fragmented (by OpenSSL) and packed (by us)
/// to fit, leaving room for IP/UDP/TURN headers under a 1280-byte IPv6 path MTU.
pub const MTU: usize = 1200;
/// Application data is not used by DTLS-SRTP; this bounds the buffer it is drained into.
const SCRATCH_LEN: usize = 2048;

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// Handshake complete; hand the keys to the dataplane (after checking the fingerprint).
    Connected(SrtpExport),
    /// The peer sent close_notify (our reply is queued); the session is over.
    Closed,
    /// Fatal handshake or record-layer error (any alert to send is queued); the session is over.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Closed,
    Failed,
}

/// A sans-IO DTLS 1.2 endpoint (one per WebRTC session).
///
/// Drive it by: feeding datagrams ([`handle_datagram`](Self::handle_datagram)) and timer
/// expiries ([`handle_timeout`](Self::handle_timeout)), then draining
/// [`poll_datagram`](Self::poll_datagram) and [`poll_event`](Self::poll_event), then
/// re-reading [`poll_timeout`](Self::poll_timeout).
///
/// Timer limitation: OpenSSL's retransmission timer runs on its own wall clock. This
/// type converts the remaining time OpenSSL reports into a deadline relative to the
/// `now` last passed in, and on [`handle_timeout`](Self::handle_timeout) asks OpenSSL to
/// retransmit; if OpenSSL's clock says the timer has not expired yet (e.g. a caller
/// running simulated time faster than real time) nothing is sent and a fresh deadline
/// is computed. With a real clock both agree to within scheduling jitter.
pub struct DtlsEndpoint {
    stream: SslStream<DatagramIo>,
    role: Role,
    state: State,
    events: VecDeque<DtlsEvent>,
    deadline: Option<Instant>,
    scratch: Box<[u8]>,
}

impl DtlsEndpoint {
    /// A fresh endpoint in `ctx`'s role. Cheap: one `SSL` object, no handshake work.
    pub fn new(ctx: &DtlsContext) -> Result<Self, Error> {
        let mut ssl = Ssl::new(&ctx.ssl)?;
        // MTU is a small constant, always representable.
        ssl.set_mtu(MTU as u32)?;
        match ctx.role {
            Role::Server => ssl.set_accept_state(),
            Role::Client => ssl.set_connect_state(),
        }
        let stream = SslStream::new(ssl, DatagramIo::new(MTU))?;
        Ok(Self {
            stream,
            role: ctx.role,
            state: State::Handshaking,
            events: VecDeque::new(),
            deadline: None,
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
        })
    }

    /// The role this endpoint plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Client role: start the handshake (queues the ClientHello). A no-op for the server
    /// role and on repeated calls.
    pub fn start(&mut self, now: Instant) -> Result<(), Error> {
        self.ensure_active()?;
        if self.role == Role::Client && self.state == State::Handshaking {
            self.drive_handshake();
            self.update_timer(now);
        }
        Ok(())
    }

    /// A datagram from the peer (may contain several records). Returns
    /// [`Error::Malformed`] for bytes that are not DTLS records (the session is untouched)
    /// and [`Error::NotActive`] once closed or failed. Records that parse but do not
    /// authenticate are dropped silently, as RFC 6347 §4.1.2.7 requires.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) -> Result<(), Error> {
        self.ensure_active()?;
        record::check_datagram(datagram)?;
        self.stream.get_mut().set_incoming(datagram);
        match self.state {
            State::Handshaking => self.drive_handshake(),
            State::Connected => self.drain_records(),
            State::Closed | State::Failed => {}
        }
        self.stream.get_mut().clear_incoming();
        self.update_timer(now);
        Ok(())
    }

    /// Next datagram to send to the peer (at most [`MTU`] bytes unless OpenSSL emits a
    /// larger single record, which it does not with the MTU set).
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().pop_outgoing()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` when no
    /// retransmission timer runs (idle, connected, closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Retransmits the last flight when the timer is due. After too many
    /// retransmissions OpenSSL gives up and [`DtlsEvent::Failed`] is emitted.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if !self.is_active() || self.deadline.is_none_or(|d| now < d) {
            return Ok(());
        }
        if ffi::handle_timeout(self.stream.ssl()) == TimeoutOutcome::GaveUp {
            let e = ErrorStack::get();
            self.fail(format!("handshake retransmissions exhausted: {e}"));
            return Ok(());
        }
        self.update_timer(now);
        Ok(())
    }

    /// Queues a close_notify (when connected) and ends the session locally; no event is
    /// emitted on this side. During a handshake there is nothing to notify: it just stops.
    pub fn close(&mut self) {
        if self.state == State::Connected {
            // Only fails when the SSL is in a bad state; closing anyway is right.
            let _ = self.stream.shutdown();
        }
        if self.is_active() {
            self.state = State::Closed;
        }
        self.deadline = None;
    }

    /// Handshake complete and not closed or failed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    fn is_active(&self) -> bool {
        matches!(self.state, State::Handshaking | State::Connected)
    }

    fn ensure_active(&self) -> Result<(), Error> {
        if self.is_active() {
            Ok(())
        } else {
            Err(Error::NotActive)
        }
    }

    fn drive_handshake(&mut self) {
        match self.stream.do_handshake() {
            Ok(()) => match self.export() {
                Ok(export) => {
                    self.state = State::Connected;
                    self.events.push_back(DtlsEvent::Connected(export));
                    // Records after Finished in the same datagram.
                    self.drain_records();
                }
                Err(reason) => self.fail(reason),
            },
            Err(e) if is_would_block(e.code()) => {}
            Err(e) => self.fail(format!("handshake failed: {e}")),
        }
    }

    /// Post-handshake input: alerts (close_notify, fatal), retransmitted client flights
    /// (OpenSSL answers them with our last flight), application data (discarded).
    fn drain_records(&mut self) {
        loop {
            match self.stream.ssl_read(&mut self.scratch) {
                Ok(_) => {}
                Err(e) if is_would_block(e.code()) => return,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    // Answer close_notify with ours (RFC 5246 §7.2.1); best effort.
                    let _ = self.stream.shutdown();
                    self.state = State::Closed;
                    self.deadline = None;
                    self.events.push_back(DtlsEvent::Closed);
                    return;
                }
                Err(e) => {
                    self.fail(format!("record layer: {e}"));
                    return;
                }
            }
        }
    }

    fn export(&self) -> Result<SrtpExport, String> {
        let ssl = self.stream.ssl();
        let profile = ssl.selected_srtp_profile().ok_or("peer negotiated no SRTP profile")?;
        let profile_id = u16::try_from(profile.id().as_raw()).map_err(|_| "bad SRTP profile id")?;
        let (k, s) = SrtpExport::key_salt_len(profile_id)
            .ok_or_else(|| format!("unsupported SRTP profile {profile_id:#06x}"))?;
        let mut material = vec![0; 2 * (k + s)];
        ssl.export_keying_material(&mut material, EXPORTER_LABEL, None)
            .map_err(|e| format!("keying material export: {e}"))?;
        let peer = ssl.peer_certificate().ok_or("peer sent no certificate")?;
        let peer_fingerprint_sha256 =
            fingerprint::sha256(&peer).map_err(|e| format!("peer fingerprint: {e}"))?;
        let peer_certificate = peer.to_der().map_err(|e| format!("peer certificate: {e}"))?;
        Ok(SrtpExport { profile_id, material, peer_fingerprint_sha256, peer_certificate })
    }

    fn fail(&mut self, reason: String) {
        self.state = State::Failed;
        self.deadline = None;
        self.events.push_back(DtlsEvent::Failed(reason));
    }

    fn update_timer(&mut self, now: Instant) {
        self.deadline = if self.is_active() {
            ffi::get_timeout(self.stream.ssl()).map(|left| now + left)
        } else {
            None
        };
    }
}

fn is_would_block(code: ErrorCode) -> bool {
    code == ErrorCode::WANT_READ || code == ErrorCode::WANT_WRITE
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DtlsCert;

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn thread_bounds() {
        // Endpoints move between tokio worker threads; contexts are shared.
        assert_send::<DtlsEndpoint>();
        assert_send_sync::<DtlsContext>();
        assert_send_sync::<DtlsCert>();
    }
}
