//! In-memory harness: rml_rtmp's client (handshake + `ClientSession`) against
//! `RtmpServerConn`, stepped until neither side has anything to say. No sockets, no sleeps.
#![allow(dead_code)]

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
};
use rts_rtmp::{RtmpEvent, RtmpOutput, RtmpServerConn};

pub struct Harness {
    pub server: RtmpServerConn,
    pub client: ClientSession,
    pub server_events: Vec<RtmpEvent>,
    pub client_events: Vec<ClientSessionEvent>,
    /// Every byte the client sent, handshake included (replayed by the garbage tests).
    pub wire: Vec<u8>,
}

impl Harness {
    /// Handshake done, client session created, nothing else sent.
    pub fn new(tc_url: Option<&str>) -> Self {
        let mut server = RtmpServerConn::new();
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().expect("c0c1");
        let mut wire = c0c1.clone();
        server.handle_input(&c0c1).expect("server takes c0c1");
        let mut s0s1s2 = Vec::new();
        while let Some(out) = server.poll_output() {
            match out {
                RtmpOutput::Transmit(b) => s0s1s2.extend_from_slice(&b),
                RtmpOutput::Event(e) => panic!("event during handshake: {e:?}"),
            }
        }
        assert_eq!(s0s1s2.len(), 1 + 1536 * 2, "S0+S1+S2");
        let c2 = match hs.process_bytes(&s0s1s2).expect("client handshake") {
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                assert!(remaining_bytes.is_empty());
                response_bytes
            }
            other => panic!("client handshake not complete: {other:?}"),
        };
        wire.extend_from_slice(&c2);
        server.handle_input(&c2).expect("server takes c2");
        assert!(server.poll_output().is_none(), "nothing to say after C2");

        let mut config = ClientSessionConfig::new();
        config.tc_url = tc_url.map(str::to_owned);
        let (client, initial) = ClientSession::new(config).expect("client session");
        let mut h = Self {
            server,
            client,
            server_events: Vec::new(),
            client_events: Vec::new(),
            wire,
        };
        h.client_results(initial);
        h
    }

    /// Feeds client results: packets go to the server (and on, until quiet), events are kept.
    pub fn client_results(&mut self, results: Vec<ClientSessionResult>) {
        let mut to_server = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => to_server.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        self.send_to_server(to_server);
    }

    pub fn client_result(&mut self, r: ClientSessionResult) {
        self.client_results(vec![r]);
    }

    /// Sends bytes to the server, then drains both sides until neither has output.
    pub fn send_to_server(&mut self, mut bytes: Vec<u8>) {
        loop {
            if !bytes.is_empty() {
                self.wire.extend_from_slice(&bytes);
                self.server.handle_input(&bytes).expect("server input");
            }
            bytes.clear();
            while let Some(out) = self.server.poll_output() {
                match out {
                    RtmpOutput::Transmit(b) => {
                        let results = self.client.handle_input(&b).expect("client input");
                        for r in results {
                            match r {
                                ClientSessionResult::OutboundResponse(p) => {
                                    bytes.extend_from_slice(&p.bytes)
                                }
                                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                                ClientSessionResult::UnhandleableMessageReceived(_) => {}
                            }
                        }
                    }
                    RtmpOutput::Event(e) => self.server_events.push(e),
                }
            }
            if bytes.is_empty() {
                return;
            }
        }
    }

    /// Drains what the server produced after an `accept_publish` / `reject_publish`.
    pub fn flush(&mut self) {
        self.send_to_server(Vec::new());
    }

    pub fn take_server_events(&mut self) -> Vec<RtmpEvent> {
        std::mem::take(&mut self.server_events)
    }

    pub fn take_client_events(&mut self) -> Vec<ClientSessionEvent> {
        std::mem::take(&mut self.client_events)
    }
}

/// splitmix64: a tiny deterministic PRNG so the garbage tests replay exactly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}
