//! A full publish from rml_rtmp's client against `RtmpServerConn`, in memory.

mod common;

use bytes::Bytes;
use common::Harness;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{ClientSessionEvent, PublishRequestType, StreamMetadata};
use rml_rtmp::time::RtmpTimestamp;
use rts_rtmp::flv::{parse_audio_tag, parse_video_tag, AudioTag, VideoTag};
use rts_rtmp::{RtmpError, RtmpEvent, RtmpOutput, RtmpServerConn};
use std::collections::HashMap;

const AVC_SEQ_HEADER: &[u8] = &[
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0x42, 0xc0,
    0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03,
    0x20, 0xf1, 0x42, 0xa4, 0x80, 0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20,
];
const AAC_SEQ_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10, 0x56, 0xe5, 0x00];

/// Connects to `app` and requests publishing `stream`; returns the harness and the
/// PublishRequested fields.
fn request_publish(
    app: &str,
    stream: &str,
    tc_url: Option<&str>,
) -> (Harness, u32, String, String, String) {
    let mut h = Harness::new(tc_url);
    let r = h
        .client
        .request_connection(app.to_owned())
        .expect("connect");
    h.client_result(r);
    assert!(
        h.take_client_events()
            .contains(&ClientSessionEvent::ConnectionRequestAccepted),
        "connect accepted"
    );
    let r = h
        .client
        .request_publishing(stream.to_owned(), PublishRequestType::Live)
        .expect("publish");
    h.client_result(r);
    let events = h.take_server_events();
    let [RtmpEvent::PublishRequested {
        request_id,
        app,
        stream,
        query,
    }] = events.as_slice()
    else {
        panic!("expected one PublishRequested, got {events:?}");
    };
    (h, *request_id, app.clone(), stream.clone(), query.clone())
}

/// An AVCC frame of `len` bytes of NALU payload (one NALU, 4-byte length).
fn nalu_tag(keyframe: bool, cts: i32, len: usize, fill: u8) -> Vec<u8> {
    let cts = cts.to_be_bytes();
    let mut v = vec![
        if keyframe { 0x17 } else { 0x27 },
        0x01,
        cts[1],
        cts[2],
        cts[3],
    ];
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(if keyframe { 0x65 } else { 0x41 });
    v.resize(v.len() + len - 1, fill);
    v
}

#[test]
fn publish_delivers_the_same_tags_with_timestamps() {
    let (mut h, id, app, stream, query) =
        request_publish("live", "s?auth_key=abc", Some("rtmp://127.0.0.1/live"));
    assert_eq!(
        (app.as_str(), stream.as_str(), query.as_str()),
        ("live", "s", "auth_key=abc")
    );
    assert!(h.take_client_events().is_empty(), "no answer before accept");

    h.server.accept_publish(id).expect("accept");
    h.flush();
    assert_eq!(
        h.take_client_events(),
        vec![ClientSessionEvent::PublishRequestAccepted]
    );

    let mut meta = StreamMetadata::new();
    meta.video_width = Some(320);
    meta.video_height = Some(240);
    meta.encoder = Some("rts-test".into());
    let r = h.client.publish_metadata(&meta).expect("metadata");
    h.client_result(r);

    let tags: Vec<(bool, u32, Bytes)> = vec![
        (true, 0, Bytes::from_static(AVC_SEQ_HEADER)),
        (false, 0, Bytes::from_static(AAC_SEQ_HEADER)),
        (true, 0, Bytes::from(nalu_tag(true, 80, 20_000, 0xab))), // spans 5 chunks
        (
            false,
            23,
            Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10, 0x04]),
        ),
        (true, 40, Bytes::from(nalu_tag(false, -40, 300, 0xcd))),
        (true, 0x00ff_fffe, Bytes::from(nalu_tag(false, 0, 10, 0))), // extended timestamp
    ];
    for (video, ts, data) in &tags {
        let r = if *video {
            h.client
                .publish_video_data(data.clone(), RtmpTimestamp::new(*ts), false)
        } else {
            h.client
                .publish_audio_data(data.clone(), RtmpTimestamp::new(*ts), false)
        }
        .expect("publish media");
        h.client_result(r);
    }

    let events = h.take_server_events();
    let RtmpEvent::Metadata(kv) = &events[0] else {
        panic!("first event should be metadata: {:?}", events[0]);
    };
    assert!(kv.contains(&("width".into(), "320".into())));
    assert!(kv.contains(&("height".into(), "240".into())));
    assert!(kv.contains(&("encoder".into(), "rts-test".into())));
    assert!(kv.windows(2).all(|w| w[0] <= w[1]), "sorted");

    let media: Vec<(bool, u32, Bytes)> = events[1..]
        .iter()
        .map(|e| match e {
            RtmpEvent::Video { timestamp_ms, data } => (true, *timestamp_ms, data.clone()),
            RtmpEvent::Audio { timestamp_ms, data } => (false, *timestamp_ms, data.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(media, tags);

    // And the bodies parse as what was sent.
    let VideoTag::AvcSequenceHeader(cfg) = parse_video_tag(&media[0].2).expect("avc") else {
        panic!("not a sequence header");
    };
    assert_eq!((cfg.profile, cfg.nal_length_size), (66, 4));
    assert!(matches!(
        parse_audio_tag(&media[1].2),
        Ok(AudioTag::AacSequenceHeader {
            object_type: 2,
            sample_rate: 44_100,
            channels: 2
        })
    ));
    assert!(matches!(
        parse_video_tag(&media[4].2),
        Ok(VideoTag::AvcNalus {
            keyframe: false,
            composition_time_ms: -40,
            ..
        })
    ));

    let r = h.client.stop_publishing().expect("stop");
    h.client_results(r);
    assert_eq!(h.take_server_events(), vec![RtmpEvent::PublishFinished]);
    // Ending twice (EOF after deleteStream) does not repeat the event.
    h.server.handle_eof().expect("eof");
    assert!(h.server.poll_output().is_none());
}

#[test]
fn reject_sends_an_error_status_and_no_media_flows() {
    let (mut h, id, ..) = request_publish("live", "s?auth_key=bad", None);
    h.server
        .reject_publish(id, "auth_key expired")
        .expect("reject");
    h.flush();
    assert_eq!(
        h.take_client_events(),
        vec![ClientSessionEvent::UnhandleableOnStatusCode {
            code: "NetStream.Publish.BadName".into()
        }]
    );
    // The request is answered; it cannot be answered again.
    assert!(matches!(
        h.server.accept_publish(id),
        Err(RtmpError::UnknownRequest(_))
    ));
    assert!(h
        .client
        .publish_video_data(
            Bytes::from_static(AVC_SEQ_HEADER),
            RtmpTimestamp::new(0),
            false
        )
        .is_err());
    h.server.handle_eof().expect("eof");
    assert!(
        h.take_server_events().is_empty(),
        "no PublishFinished for a rejected publish"
    );
}

#[test]
fn query_from_app_then_tc_url() {
    let (_, _, app, stream, query) = request_publish(
        "live?auth_key=fromapp",
        "s",
        Some("rtmp://h/live?auth_key=fromapp"),
    );
    assert_eq!(
        (app.as_str(), stream.as_str(), query.as_str()),
        ("live", "s", "auth_key=fromapp")
    );

    let (_, _, app, stream, query) =
        request_publish("live", "cam1", Some("rtmp://h:1935/live?auth_key=fromtc"));
    assert_eq!(
        (app.as_str(), stream.as_str(), query.as_str()),
        ("live", "cam1", "auth_key=fromtc")
    );

    let (_, _, _, _, query) = request_publish("live", "s", None);
    assert_eq!(query, "");
}

#[test]
fn server_answers_pings_and_acknowledges_the_window() {
    let (mut h, id, ..) = request_publish("live", "s", None);
    h.server.accept_publish(id).expect("accept");
    h.flush();
    h.take_client_events();

    let (packet, _) = h.client.send_ping_request().expect("ping");
    h.send_to_server(packet.bytes);
    assert!(h
        .take_client_events()
        .iter()
        .any(|e| matches!(e, ClientSessionEvent::PingResponseReceived { .. })));

    // The client asked for a 2.5 MB window on connect: 3 MB of video must be acknowledged.
    let frame = Bytes::from(nalu_tag(false, 0, 30_000, 7));
    for i in 0..100u32 {
        let r = h
            .client
            .publish_video_data(frame.clone(), RtmpTimestamp::new(i * 40), false)
            .expect("video");
        h.client_result(r);
    }
    let acks: Vec<u32> = h
        .take_client_events()
        .iter()
        .filter_map(|e| match e {
            ClientSessionEvent::AcknowledgementReceived { bytes_received } => Some(*bytes_received),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1, "one ack per 2.5 MB window: {acks:?}");
    assert!(acks[0] >= 2_500_000 && (acks[0] as usize) <= h.wire.len());
    assert_eq!(h.take_server_events().len(), 100);
}

#[test]
fn handshake_errors_and_truncation() {
    let mut conn = RtmpServerConn::new();
    assert!(matches!(
        conn.handle_input(&[6, 0, 0]),
        Err(RtmpError::Handshake(_))
    ));
    assert!(matches!(conn.handle_input(&[3]), Err(RtmpError::Closed)));

    // C0 and half of C1, then the peer goes away.
    let mut conn = RtmpServerConn::new();
    let mut c1 = vec![3u8];
    c1.extend(std::iter::repeat_n(0x5a, 700));
    conn.handle_input(&c1)
        .expect("partial handshake is not an error yet");
    while let Some(out) = conn.poll_output() {
        assert!(matches!(out, RtmpOutput::Transmit(_)), "only S0/S1 so far");
    }
    assert!(matches!(
        conn.handle_eof(),
        Err(RtmpError::HandshakeTruncated)
    ));
}

/// Serializes one AMF0 command with `ser` (one serializer per test keeps chunk header
/// compression consistent with what the server has seen).
fn command(
    ser: &mut ChunkSerializer,
    name: &str,
    tid: f64,
    obj: Amf0Value,
    args: Vec<Amf0Value>,
    msid: u32,
) -> Vec<u8> {
    let msg = RtmpMessage::Amf0Command {
        command_name: name.into(),
        transaction_id: tid,
        command_object: obj,
        additional_arguments: args,
    };
    let payload = msg
        .into_message_payload(RtmpTimestamp::new(0), msid)
        .expect("payload");
    ser.serialize(&payload, false, false)
        .expect("serialize")
        .bytes
}

fn connect_obj(app: &str) -> Amf0Value {
    let mut m = HashMap::new();
    m.insert("app".to_owned(), Amf0Value::Utf8String(app.into()));
    Amf0Value::Object(m)
}

/// A server past the handshake, and a serializer to talk to it with.
fn raw_server() -> (RtmpServerConn, ChunkSerializer) {
    let h = Harness::new(None);
    (h.server, ChunkSerializer::new())
}

/// A server past `connect("live")`, for tests of what may follow it.
fn connected_server() -> (RtmpServerConn, ChunkSerializer) {
    let (mut s, mut ser) = raw_server();
    s.handle_input(&command(&mut ser, "connect", 1.0, connect_obj("live"), vec![], 0)).expect("connect");
    (s, ser)
}

#[test]
fn commands_out_of_order_are_errors() {
    let (mut s, mut ser) = raw_server();
    let publish = command(
        &mut ser,
        "publish",
        0.0,
        Amf0Value::Null,
        vec![Amf0Value::Utf8String("s".into())],
        1,
    );
    assert!(matches!(
        s.handle_input(&publish),
        Err(RtmpError::Protocol("command before connect"))
    ));

    let (mut s, mut ser) = connected_server();
    let publish = command(
        &mut ser,
        "publish",
        0.0,
        Amf0Value::Null,
        vec![Amf0Value::Utf8String("s".into())],
        1,
    );
    assert!(matches!(
        s.handle_input(&publish),
        Err(RtmpError::Protocol("publish on a stream not created"))
    ));

    let (mut s, mut ser) = connected_server();
    let again = command(&mut ser, "connect", 2.0, connect_obj("live"), vec![], 0);
    assert!(matches!(
        s.handle_input(&again),
        Err(RtmpError::Protocol("second connect"))
    ));

    let (mut s, mut ser) = connected_server();
    let play = command(
        &mut ser,
        "play",
        0.0,
        Amf0Value::Null,
        vec![Amf0Value::Utf8String("s".into())],
        0,
    );
    assert!(matches!(
        s.handle_input(&play),
        Err(RtmpError::Protocol("play on a stream not created"))
    ));

    let (mut s, mut ser) = raw_server();
    assert!(matches!(
        s.handle_input(&command(
            &mut ser,
            "connect",
            1.0,
            Amf0Value::Null,
            vec![],
            0
        )),
        Err(RtmpError::Message(_))
    ));
}

#[test]
fn hostile_amf_and_control_messages_are_errors_not_panics() {
    // Two-value command: rml_rtmp's own decoder panics on this (drain(..3)).
    let (mut s, mut ser) = connected_server();
    let mut body = rml_rtmp::rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("FCUnpublish".into()),
        Amf0Value::Number(3.0),
    ])
    .expect("amf");
    let short = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id: 20,
        message_stream_id: 0,
        data: Bytes::from(body.clone()),
    };
    s.handle_input(&ser.serialize(&short, false, false).expect("ser").bytes)
        .expect("short command is fine");

    // Nested objects 100 000 deep would overflow rml_amf0's recursive decoder.
    body.clear();
    body.extend_from_slice(&[0x02, 0x00, 0x07]);
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&2f64.to_be_bytes());
    for _ in 0..100_000 {
        body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    let deep = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id: 20,
        message_stream_id: 0,
        data: Bytes::from(body),
    };
    let (mut s, mut ser) = raw_server();
    assert!(matches!(
        s.handle_input(&ser.serialize(&deep, false, false).expect("ser").bytes),
        Err(RtmpError::AmfTooDeep(_))
    ));

    // SetChunkSize 0 would stall the chunk decoder.
    let (mut s, mut ser) = raw_server();
    let zero = RtmpMessage::Unknown {
        type_id: 1,
        data: Bytes::from_static(&[0, 0, 0, 0]),
    }
    .into_message_payload(RtmpTimestamp::new(0), 0)
    .expect("payload");
    assert!(matches!(
        s.handle_input(&ser.serialize(&zero, false, false).expect("ser").bytes),
        Err(RtmpError::Protocol("chunk size 0"))
    ));
}

#[test]
fn input_after_publish_waits_for_the_answer() {
    // publish, then (without waiting for onStatus) a video tag and deleteStream, all in one
    // read: nothing after the publish may be judged before the caller answers.
    let (mut s, mut ser) = connected_server();
    s.handle_input(&command(
        &mut ser,
        "createStream",
        2.0,
        Amf0Value::Null,
        vec![],
        0,
    ))
    .expect("createStream");
    while s.poll_output().is_some() {}

    let mut burst = command(
        &mut ser,
        "publish",
        0.0,
        Amf0Value::Null,
        vec![
            Amf0Value::Utf8String("s".into()),
            Amf0Value::Utf8String("live".into()),
        ],
        1,
    );
    let video = RtmpMessage::VideoData {
        data: Bytes::from_static(AVC_SEQ_HEADER),
    }
    .into_message_payload(RtmpTimestamp::new(5), 1)
    .expect("payload");
    burst.extend_from_slice(&ser.serialize(&video, false, false).expect("ser").bytes);
    burst.extend_from_slice(&command(
        &mut ser,
        "deleteStream",
        0.0,
        Amf0Value::Null,
        vec![Amf0Value::Number(1.0)],
        1,
    ));
    s.handle_input(&burst).expect("burst");

    let events: Vec<_> = std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            RtmpOutput::Event(e) => Some(e),
            RtmpOutput::Transmit(_) => None,
        })
        .collect();
    assert!(
        matches!(
            events.as_slice(),
            [RtmpEvent::PublishRequested { request_id: 0, .. }]
        ),
        "{events:?}"
    );

    s.accept_publish(0).expect("accept");
    let events: Vec<_> = std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            RtmpOutput::Event(e) => Some(e),
            RtmpOutput::Transmit(_) => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![
            RtmpEvent::Video {
                timestamp_ms: 5,
                data: Bytes::from_static(AVC_SEQ_HEADER)
            },
            RtmpEvent::PublishFinished,
        ]
    );
}
