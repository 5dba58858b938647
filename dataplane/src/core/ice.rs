//! UDP input: demultiplexing (RFC 7983) and ICE-lite. A viewer's binding
//! requests, checked against the credentials control handed over, select
//! the address media goes to (the browser nominates) and refresh consent
//! (RFC 7675); sessions without a valid check for `consent_timeout_s` are
//! removed by the housekeeping timer.

use super::Core;
use rts_common::ipc::ShardToControl;
use rts_stun::{Class, PacketKind, StunMessage};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

const STUN_BINDING: u16 = 0x0001;
/// Room for a binding response or error (attributes we write: XOR-MAPPED-
/// ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT, ERROR-CODE).
const STUN_ROOM: usize = 256;

impl Core {
    /// A datagram from `src` that arrived at our address `local`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, local: Option<IpAddr>, data: &mut [u8]) {
        let now = self.advance(now);
        self.counters.udp_datagrams_in += 1;
        self.counters.udp_bytes_in += data.len() as u64;
        match rts_stun::classify(data) {
            PacketKind::Stun => self.on_stun(now, src, local, data),
            PacketKind::Dtls => {
                let Some(&idx) = self.by_addr.get(&src) else {
                    self.counters.unknown_dropped += 1;
                    return;
                };
                let session = self.sessions[idx].id;
                self.sessions[idx].udp_in += data.len() as u64;
                self.counters.dtls_forwarded += 1;
                self.push_ctl(ShardToControl::DtlsFromPeer { session, peer: src, data: data.to_vec() });
            }
            PacketKind::Rtcp => self.on_rtcp(now, src, data),
            PacketKind::Rtp | PacketKind::Unknown => self.counters.unknown_dropped += 1,
        }
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, local: Option<IpAddr>, data: &[u8]) {
        let Ok(msg) = StunMessage::parse(data) else {
            self.counters.stun_rejected += 1;
            return;
        };
        if msg.class != Class::Request || msg.method != STUN_BINDING {
            self.counters.stun_rejected += 1;
            return;
        }
        let Some(idx) = msg.username.and_then(rts_stun::split_username).and_then(|(ours, _theirs)| self.by_ufrag.get(ours).copied()) else {
            self.counters.stun_rejected += 1;
            return;
        };
        let tid = msg.transaction_id;
        let sess = &mut self.sessions[idx];
        if !msg.verify_integrity(sess.local_pwd.as_bytes()) {
            self.counters.stun_rejected += 1;
            self.out.send_with(src, local, STUN_ROOM, |out| rts_stun::write_binding_error(&tid, 401, "Unauthorized", None, out).ok());
            return;
        }
        self.counters.stun_ok += 1;
        sess.last_consent = now;
        sess.udp_in += data.len() as u64;
        // ICE-lite: the browser (controlling) nominates. Take the first
        // address that passes a check, and move to a nominated one.
        let select = sess.peer.is_none() || (msg.use_candidate && sess.peer != Some(src));
        if select {
            if let Some(old) = sess.peer.replace(src) {
                self.by_addr.remove(&old);
            }
            sess.local_ip = local;
            let id = sess.id;
            self.by_addr.insert(src, idx);
            self.usage.set_client(id, src);
            self.push_ctl(ShardToControl::IceConnected { session: id, peer: src });
        }
        let pwd = self.sessions[idx].local_pwd.as_bytes();
        let n = self.out.send_with(src, local, STUN_ROOM, |out| rts_stun::write_binding_success(&tid, src, pwd, out).ok());
        self.sessions[idx].udp_out += n as u64;
    }
}
