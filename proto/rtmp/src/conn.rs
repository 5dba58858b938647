//! The server side of one RTMP TCP connection: one publish (ingest) or one
//! play. A player's media is written by the caller with
//! [`crate::media::encode_media_message`] on the message stream
//! [`RtmpServerConn::accept_play`] returns.
//!
//! Bytes go in with [`RtmpServerConn::handle_input`]; bytes to write back and events come
//! out of [`RtmpServerConn::poll_output`]. Mutate, then drain, then mutate again.
//!
//! `rml_rtmp` does the handshake, the chunk stream (de)serialisation and AMF0; the small
//! publish state machine is here rather than in `rml_rtmp::sessions::ServerSession`
//! because that session reads `SystemTime` for outbound timestamps, hides `tcUrl` (where
//! some encoders put `auth_key`), answers rejects with `_error` instead of an `onStatus`
//! that encoders show, and panics on AMF0 commands with fewer than three values.

use std::collections::VecDeque;
use std::mem;
use std::panic::{self, AssertUnwindSafe};

use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{
    MessagePayload, PeerBandwidthLimitType, RtmpMessage, UserControlEventType,
};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::amf;
use crate::error::RtmpError;
use crate::url;

/// Outbound chunk size, as SRS uses: large enough that a typical video frame is a few
/// chunks, small enough that control messages are not stuck behind one.
pub const CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size and peer bandwidth sent on `connect` (SRS's values).
pub const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// Most `createStream` calls accepted on one connection; encoders use one.
const MAX_STREAMS: usize = 8;
/// Most bytes buffered by the chunk decoder without a message coming out: a maximal
/// (16 MiB) message plus chunk headers at the smallest sane chunk size. Bounds what a
/// peer can make us hold, including rml_rtmp's never-completing interleaved messages.
const MAX_BUFFERED: usize = 20 << 20;

/// What the connection wants the caller to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpOutput {
    /// Write these bytes to the TCP peer, in order.
    Transmit(Bytes),
    /// Something happened on the connection.
    Event(RtmpEvent),
}

/// Events from a publishing client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpEvent {
    /// The client wants to publish. Answer with [`RtmpServerConn::accept_publish`] or
    /// [`RtmpServerConn::reject_publish`]. Until then input is held unparsed (encoders send
    /// nothing before the answer anyway), so no later event can contradict this one.
    ///
    /// `app` and `stream` have any query string removed; `query` is the raw query
    /// (`auth_key=...`), taken from the stream key (`s?auth_key=..`, how ffmpeg and OBS send
    /// it), else the app (`live?auth_key=..`), else the `tcUrl`.
    PublishRequested {
        /// Pass back to `accept_publish` / `reject_publish`.
        request_id: u32,
        /// RTMP application, e.g. `live`.
        app: String,
        /// Stream name, e.g. `s`.
        stream: String,
        /// Raw query string without `?`, empty if none.
        query: String,
    },
    /// An accepted publish ended (`FCUnpublish`, `deleteStream`, `closeStream`, or
    /// [`RtmpServerConn::handle_eof`]). Emitted at most once per accepted publish.
    PublishFinished,
    /// The client wants to play. Answer with [`RtmpServerConn::accept_play`] or
    /// [`RtmpServerConn::reject_play`]; input is held until then, as for a publish.
    /// `app`, `stream` and `query` as in `PublishRequested`.
    PlayRequested {
        /// Pass back to `accept_play` / `reject_play`.
        request_id: u32,
        /// RTMP application.
        app: String,
        /// Stream name.
        stream: String,
        /// Raw query string without `?`, empty if none.
        query: String,
    },
    /// An accepted play ended (`deleteStream` or `closeStream` of its stream).
    PlayFinished,
    /// `onMetaData` as displayable key/value pairs, sorted by key.
    Metadata(Vec<(String, String)>),
    /// A raw FLV video tag body (parse with [`crate::flv::parse_video_tag`]).
    Video {
        /// The RTMP message timestamp; 32-bit wrapping is left to the caller.
        timestamp_ms: u32,
        /// Tag body, sharing the decoder's buffer (no copy).
        data: Bytes,
    },
    /// A raw FLV audio tag body (parse with [`crate::flv::parse_audio_tag`]).
    Audio {
        /// The RTMP message timestamp; 32-bit wrapping is left to the caller.
        timestamp_ms: u32,
        /// Tag body, sharing the decoder's buffer (no copy).
        data: Bytes,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    request_id: u32,
    stream_id: u32,
    play: bool,
}

/// Sans-IO RTMP server connection: handshake, then one publish.
pub struct RtmpServerConn {
    /// `Some` until the handshake completes.
    handshake: Option<Box<Handshake>>,
    /// Set after a fatal error or EOF; all further input is refused.
    closed: bool,
    deser: ChunkDeserializer,
    ser: ChunkSerializer,
    out: VecDeque<RtmpOutput>,
    /// Outbound bytes not yet handed out; consecutive writes coalesce into one `Transmit`.
    tx: Vec<u8>,
    /// The `connect` app (with any query); `None` before `connect`.
    app: Option<String>,
    tc_url: String,
    streams: Vec<u32>,
    next_stream_id: u32,
    next_request_id: u32,
    pending: Option<Pending>,
    /// Input received while `pending`, parsed once the caller answers.
    held: Vec<u8>,
    /// Message stream id of the accepted publish.
    publishing: Option<u32>,
    /// Message stream id of the accepted play.
    playing: Option<u32>,
    /// Peer's window ack size; 0 means the peer did not ask for acknowledgements.
    ack_window: u32,
    /// Total bytes received (wrapping, as the RTMP ack sequence number is).
    bytes_received: u32,
    bytes_since_ack: u32,
    buffered_since_message: usize,
}

impl Default for RtmpServerConn {
    fn default() -> Self {
        Self::new()
    }
}

impl RtmpServerConn {
    /// A connection waiting for the client's C0/C1.
    pub fn new() -> Self {
        Self {
            handshake: Some(Box::new(Handshake::new(PeerType::Server))),
            closed: false,
            deser: ChunkDeserializer::new(),
            ser: ChunkSerializer::new(),
            out: VecDeque::new(),
            tx: Vec::new(),
            app: None,
            tc_url: String::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            next_request_id: 0,
            pending: None,
            held: Vec::new(),
            publishing: None,
            playing: None,
            ack_window: 0,
            bytes_received: 0,
            bytes_since_ack: 0,
            buffered_since_message: 0,
        }
    }

    /// Bytes received from the TCP peer (handshake first, then chunks). Errors are fatal for
    /// the connection (caller closes it and counts the reason); later calls return
    /// [`RtmpError::Closed`].
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        if self.closed {
            return Err(RtmpError::Closed);
        }
        let r = self.input(data);
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    /// The peer closed its side. Ends an accepted publish (emits
    /// [`RtmpEvent::PublishFinished`]); errors if the handshake had not completed, so the
    /// caller can count truncated handshakes.
    pub fn handle_eof(&mut self) -> Result<(), RtmpError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if self.handshake.is_some() {
            return Err(RtmpError::HandshakeTruncated);
        }
        self.finish_publish();
        Ok(())
    }

    /// Next thing to do: bytes to write or an event. `None` when drained.
    pub fn poll_output(&mut self) -> Option<RtmpOutput> {
        if self.out.is_empty() {
            self.flush_tx();
        }
        self.out.pop_front()
    }

    /// The `tcUrl` of the client's `connect` (where it says it connected
    /// to, e.g. `rtmp://edge.example.com/live`); empty before `connect` or
    /// without one.
    pub fn tc_url(&self) -> &str {
        &self.tc_url
    }

    /// Answers a [`RtmpEvent::PublishRequested`]: `NetStream.Publish.Start`, after which
    /// media is delivered as events.
    ///
    /// Input held while the request was pending is processed now, so this can queue more
    /// events, and an error from it is fatal exactly as from `handle_input`.
    pub fn accept_publish(&mut self, request_id: u32) -> Result<(), RtmpError> {
        let p = self.take_pending(request_id, false)?;
        self.publishing = Some(p.stream_id);
        self.send(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(p.stream_id),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )?;
        self.on_status(
            p.stream_id,
            "status",
            "NetStream.Publish.Start",
            "Started publishing stream.",
        )?;
        self.resume()
    }

    /// Refuses a [`RtmpEvent::PublishRequested`] with an `onStatus` error
    /// (`NetStream.Publish.BadName`, `reason` as description). The caller then flushes the
    /// output and closes the connection. Held input is processed as in `accept_publish`
    /// (media in it is dropped).
    pub fn reject_publish(&mut self, request_id: u32, reason: &str) -> Result<(), RtmpError> {
        let p = self.take_pending(request_id, false)?;
        self.on_status(p.stream_id, "error", "NetStream.Publish.BadName", reason)?;
        self.resume()
    }

    /// Answers a [`RtmpEvent::PlayRequested`]: StreamBegin, `NetStream.Play.Reset` and
    /// `NetStream.Play.Start`. Returns the message stream id the player's media goes on
    /// (see [`crate::media::encode_media_message`]). Held input is processed as in
    /// `accept_publish`.
    pub fn accept_play(&mut self, request_id: u32) -> Result<u32, RtmpError> {
        let p = self.take_pending(request_id, true)?;
        self.playing = Some(p.stream_id);
        self.send(
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(p.stream_id),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )?;
        self.on_status(p.stream_id, "status", "NetStream.Play.Reset", "Playing and resetting stream.")?;
        self.on_status(p.stream_id, "status", "NetStream.Play.Start", "Started playing stream.")?;
        self.resume()?;
        self.flush_tx();
        Ok(p.stream_id)
    }

    /// Refuses a [`RtmpEvent::PlayRequested`] with `NetStream.Play.StreamNotFound`
    /// (`reason` as description); the caller then flushes and closes.
    pub fn reject_play(&mut self, request_id: u32, reason: &str) -> Result<(), RtmpError> {
        let p = self.take_pending(request_id, true)?;
        self.on_status(p.stream_id, "error", "NetStream.Play.StreamNotFound", reason)?;
        self.resume()?;
        self.flush_tx();
        Ok(())
    }

    /// Processes input held while a publish request was pending.
    fn resume(&mut self) -> Result<(), RtmpError> {
        let held = mem::take(&mut self.held);
        let r = self.chunks(&held);
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    fn take_pending(&mut self, request_id: u32, play: bool) -> Result<Pending, RtmpError> {
        if self.closed {
            return Err(RtmpError::Closed);
        }
        match self.pending {
            Some(p) if p.request_id == request_id && p.play == play => {
                self.pending = None;
                Ok(p)
            }
            _ => Err(RtmpError::UnknownRequest(request_id)),
        }
    }

    fn input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        // Truncation is intended: the RTMP byte counter wraps at 2^32.
        let len32 = data.len() as u32;
        self.bytes_received = self.bytes_received.wrapping_add(len32);
        if let Some(hs) = self.handshake.as_mut() {
            match hs.process_bytes(data) {
                Err(e) => Err(RtmpError::Handshake(e.to_string())),
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    self.tx.extend_from_slice(&response_bytes);
                    Ok(())
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    self.tx.extend_from_slice(&response_bytes);
                    self.handshake = None;
                    self.chunks(&remaining_bytes)
                }
            }
        } else {
            self.bytes_since_ack = self.bytes_since_ack.saturating_add(len32);
            if self.ack_window > 0 && self.bytes_since_ack >= self.ack_window {
                self.bytes_since_ack = 0;
                let sequence_number = self.bytes_received;
                self.send(RtmpMessage::Acknowledgement { sequence_number }, 0)?;
            }
            self.chunks(data)
        }
    }

    fn chunks(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        if self.pending.is_some() {
            // Hold, don't parse: whatever the client sends next must be judged against the
            // answer the caller has not given yet (see `RtmpEvent::PublishRequested`).
            self.held.extend_from_slice(data);
            if self.held.len() > MAX_BUFFERED {
                return Err(RtmpError::TooLarge(self.held.len()));
            }
            return Ok(());
        }
        self.buffered_since_message = self.buffered_since_message.saturating_add(data.len());
        let mut input = data;
        // A `publish` stops the loop; the decoder keeps the rest of its buffer until the
        // caller answers and `resume` continues.
        while self.pending.is_none() {
            let deser = &mut self.deser;
            // rml_rtmp's chunk decoder has arithmetic that underflows on some malformed
            // headers (interleaved partial messages, small extended timestamps on type 1/2
            // chunks) and panics under overflow checks. Catch it and fail the connection;
            // the decoder is never used again afterwards.
            let r = panic::catch_unwind(AssertUnwindSafe(|| deser.get_next_message(input)));
            input = &[];
            let payload = match r {
                Err(_) => return Err(RtmpError::ChunkDecoderPanic),
                Ok(Err(e)) => return Err(RtmpError::Chunk(e.to_string())),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(p))) => p,
            };
            self.buffered_since_message = 0;
            self.message(payload)?;
        }
        if self.buffered_since_message > MAX_BUFFERED {
            return Err(RtmpError::TooLarge(self.buffered_since_message));
        }
        Ok(())
    }

    fn message(&mut self, p: MessagePayload) -> Result<(), RtmpError> {
        match p.type_id {
            // SetChunkSize, WindowAckSize: must parse.
            1 | 5 => match p.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    if size == 0 {
                        return Err(RtmpError::Protocol("chunk size 0"));
                    }
                    self.deser
                        .set_max_chunk_size(size as usize)
                        .map_err(|e| RtmpError::Chunk(e.to_string()))
                }
                Ok(RtmpMessage::WindowAcknowledgement { size }) => {
                    self.ack_window = size;
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(RtmpError::Message(e.to_string())),
            },
            // User control: answer pings; tolerate event types rml_rtmp does not know
            // (e.g. SWF verification) rather than dropping the encoder.
            4 => {
                if let Ok(RtmpMessage::UserControl {
                    event_type: UserControlEventType::PingRequest,
                    timestamp,
                    ..
                }) = p.to_rtmp_message()
                {
                    self.send(
                        RtmpMessage::UserControl {
                            event_type: UserControlEventType::PingResponse,
                            stream_id: None,
                            buffer_length: None,
                            timestamp,
                        },
                        0,
                    )?;
                }
                Ok(())
            }
            8 | 9 => {
                if self.publishing == Some(p.message_stream_id) {
                    let timestamp_ms = p.timestamp.value;
                    let data = p.data;
                    self.event(if p.type_id == 8 {
                        RtmpEvent::Audio { timestamp_ms, data }
                    } else {
                        RtmpEvent::Video { timestamp_ms, data }
                    });
                }
                Ok(())
            }
            18 => self.data_message(&p),
            20 => self.command(&p, &p.data),
            // "AMF3" command: Flash prefixes AMF0 with a 0x00 format byte.
            17 => match p.data.split_first() {
                Some((0, rest)) => self.command(&p, rest),
                _ => self.command(&p, &p.data),
            },
            // Abort, Ack, SetPeerBandwidth, AMF3 data, shared objects, aggregates: ignored.
            _ => Ok(()),
        }
    }

    fn data_message(&mut self, p: &MessagePayload) -> Result<(), RtmpError> {
        if self.publishing != Some(p.message_stream_id) {
            return Ok(());
        }
        let values = amf::decode(&p.data)?;
        let mut it = values.into_iter().peekable();
        if matches!(it.peek(), Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            it.next();
        }
        if !matches!(it.next(), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            return Ok(());
        }
        if let Some(Amf0Value::Object(props)) = it.next() {
            let mut kv: Vec<(String, String)> = props
                .iter()
                .map(|(k, v)| (k.clone(), amf::display(v)))
                .collect();
            kv.sort();
            self.event(RtmpEvent::Metadata(kv));
        }
        Ok(())
    }

    fn command(&mut self, p: &MessagePayload, body: &[u8]) -> Result<(), RtmpError> {
        let cmd = amf::command(amf::decode(body)?)?;
        match cmd.name.as_str() {
            "connect" => self.on_connect(cmd),
            "createStream" => {
                self.require_connected()?;
                if self.streams.len() >= MAX_STREAMS {
                    return Err(RtmpError::Protocol("too many createStream"));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.push(id);
                self.result(cmd.transaction_id, vec![Amf0Value::Number(f64::from(id))])
            }
            // ffmpeg and OBS send these before createStream; answer so the transaction closes.
            "releaseStream" | "FCPublish" if cmd.transaction_id != 0.0 => {
                self.result(cmd.transaction_id, vec![Amf0Value::Undefined])
            }
            "publish" => self.on_publish(p.message_stream_id, cmd),
            "FCUnpublish" => {
                self.finish_publish();
                Ok(())
            }
            "deleteStream" => {
                if let Some(Amf0Value::Number(n)) = cmd.args.first() {
                    let id = *n as u32;
                    self.streams.retain(|&s| s != id);
                    self.end_stream(id);
                }
                Ok(())
            }
            "closeStream" => {
                self.end_stream(p.message_stream_id);
                Ok(())
            }
            "play" => self.on_play(p.message_stream_id, cmd),
            "play2" => Err(RtmpError::Unsupported("play2")),
            _ => Ok(()),
        }
    }

    fn on_connect(&mut self, cmd: amf::Command) -> Result<(), RtmpError> {
        if self.app.is_some() {
            return Err(RtmpError::Protocol("second connect"));
        }
        let Amf0Value::Object(mut props) = cmd.object else {
            return Err(RtmpError::Message("connect without command object".into()));
        };
        let Some(Amf0Value::Utf8String(app)) = props.remove("app") else {
            return Err(RtmpError::Message("connect without app".into()));
        };
        if let Some(Amf0Value::Utf8String(tc)) = props.remove("tcUrl") {
            self.tc_url = tc;
        }
        self.app = Some(app);

        self.send(
            RtmpMessage::WindowAcknowledgement {
                size: WINDOW_ACK_SIZE,
            },
            0,
        )?;
        self.send(
            RtmpMessage::SetPeerBandwidth {
                size: WINDOW_ACK_SIZE,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
            0,
        )?;
        let packet = self
            .ser
            .set_max_chunk_size(CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| RtmpError::Serialize(e.to_string()))?;
        self.tx.extend_from_slice(&packet.bytes);

        let mut server = std::collections::HashMap::with_capacity(3);
        server.insert(
            "fmsVer".to_owned(),
            Amf0Value::Utf8String("FMS/3,5,3,888".to_owned()),
        );
        server.insert("capabilities".to_owned(), Amf0Value::Number(127.0));
        server.insert("mode".to_owned(), Amf0Value::Number(1.0));
        let mut info = amf::status(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(m) = &mut info {
            m.insert("objectEncoding".to_owned(), Amf0Value::Number(0.0));
        }
        self.send(
            RtmpMessage::Amf0Command {
                command_name: "_result".to_owned(),
                transaction_id: cmd.transaction_id,
                command_object: Amf0Value::Object(server),
                additional_arguments: vec![info],
            },
            0,
        )
    }

    fn on_publish(&mut self, stream_id: u32, cmd: amf::Command) -> Result<(), RtmpError> {
        self.on_stream_request(stream_id, cmd, false)
    }

    fn on_play(&mut self, stream_id: u32, cmd: amf::Command) -> Result<(), RtmpError> {
        self.on_stream_request(stream_id, cmd, true)
    }

    /// `publish` or `play` (one per connection): held until the caller
    /// answers the event it raises.
    fn on_stream_request(&mut self, stream_id: u32, cmd: amf::Command, play: bool) -> Result<(), RtmpError> {
        let app = self.require_connected()?.to_owned();
        let (busy, not_created, no_name) = if play {
            ("play while publishing or playing", "play on a stream not created", "play without stream name")
        } else {
            ("publish while publishing or playing", "publish on a stream not created", "publish without stream name")
        };
        if self.pending.is_some() || self.publishing.is_some() || self.playing.is_some() {
            return Err(RtmpError::Protocol(busy));
        }
        if !self.streams.contains(&stream_id) {
            return Err(RtmpError::Protocol(not_created));
        }
        let Some(Amf0Value::Utf8String(name)) = cmd.args.first() else {
            return Err(RtmpError::Message(no_name.into()));
        };
        let (app, stream, query) = url::publish_target(&app, name, &self.tc_url);
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.pending = Some(Pending { request_id, stream_id, play });
        self.event(if play {
            RtmpEvent::PlayRequested { request_id, app, stream, query }
        } else {
            RtmpEvent::PublishRequested { request_id, app, stream, query }
        });
        Ok(())
    }

    fn require_connected(&self) -> Result<&str, RtmpError> {
        self.app
            .as_deref()
            .ok_or(RtmpError::Protocol("command before connect"))
    }

    /// `deleteStream` / `closeStream` on `id`: ends the publish if it is on that stream.
    fn end_stream(&mut self, id: u32) {
        if self.publishing == Some(id) {
            self.finish_publish();
        }
        if self.playing == Some(id) {
            self.playing = None;
            self.event(RtmpEvent::PlayFinished);
        }
    }

    /// Ends the accepted publish, if any. (No message is parsed while a request is
    /// pending, so a pending request is never cancelled behind the caller's back.)
    fn finish_publish(&mut self) {
        if self.publishing.take().is_some() {
            self.event(RtmpEvent::PublishFinished);
        }
    }

    fn result(&mut self, transaction_id: f64, args: Vec<Amf0Value>) -> Result<(), RtmpError> {
        self.send(
            RtmpMessage::Amf0Command {
                command_name: "_result".to_owned(),
                transaction_id,
                command_object: Amf0Value::Null,
                additional_arguments: args,
            },
            0,
        )
    }

    fn on_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        self.send(
            RtmpMessage::Amf0Command {
                command_name: "onStatus".to_owned(),
                transaction_id: 0.0,
                command_object: Amf0Value::Null,
                additional_arguments: vec![amf::status(level, code, description)],
            },
            stream_id,
        )
    }

    /// Serializes one of our messages. Timestamps are 0: the server sends only control
    /// and command messages, whose timestamps peers ignore, so no clock is needed.
    fn send(&mut self, msg: RtmpMessage, stream_id: u32) -> Result<(), RtmpError> {
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .map_err(|e| RtmpError::Serialize(e.to_string()))?;
        let packet = self
            .ser
            .serialize(&payload, false, false)
            .map_err(|e| RtmpError::Serialize(e.to_string()))?;
        if self.tx.is_empty() {
            self.tx = packet.bytes;
        } else {
            self.tx.extend_from_slice(&packet.bytes);
        }
        Ok(())
    }

    fn event(&mut self, e: RtmpEvent) {
        self.flush_tx();
        self.out.push_back(RtmpOutput::Event(e));
    }

    fn flush_tx(&mut self) {
        if !self.tx.is_empty() {
            let bytes = Bytes::from(mem::take(&mut self.tx));
            self.out.push_back(RtmpOutput::Transmit(bytes));
        }
    }
}
