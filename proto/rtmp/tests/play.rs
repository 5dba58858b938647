//! A play from rml_rtmp's client against `RtmpServerConn`, in memory: the
//! request, the answer the client accepts, and media written with
//! `media::encode_media_message` arriving as the client's video and audio.

mod common;

use bytes::Bytes;
use common::Harness;
use rml_rtmp::sessions::{ClientSessionEvent, ClientSessionResult};
use rts_rtmp::media::encode_media_message;
use rts_rtmp::{RtmpError, RtmpEvent};

fn request_play(stream: &str) -> (Harness, u32, String, String, String) {
    let mut h = Harness::new(None);
    let r = h.client.request_connection("live".to_owned()).expect("connect");
    h.client_result(r);
    assert!(h.take_client_events().contains(&ClientSessionEvent::ConnectionRequestAccepted));
    let r = h.client.request_playback(stream.to_owned()).expect("play");
    h.client_result(r);
    let events = h.take_server_events();
    let [RtmpEvent::PlayRequested { request_id, app, stream, query }] = events.as_slice() else {
        panic!("expected one PlayRequested, got {events:?}");
    };
    (h, *request_id, app.clone(), stream.clone(), query.clone())
}

/// Hands `bytes` to the client, returning its events.
fn to_client(h: &mut Harness, bytes: &[u8]) -> Vec<ClientSessionEvent> {
    let mut events = Vec::new();
    for r in h.client.handle_input(bytes).expect("client input") {
        if let ClientSessionResult::RaisedEvent(e) = r {
            events.push(e);
        }
    }
    events
}

#[test]
fn play_is_asked_answered_and_media_reaches_the_client() {
    let (mut h, id, app, stream, query) = request_play("s?auth_key=k");
    assert_eq!((app.as_str(), stream.as_str(), query.as_str()), ("live", "s", "auth_key=k"));
    assert!(h.take_client_events().is_empty(), "no answer before accept");
    assert!(matches!(h.server.accept_publish(id), Err(RtmpError::UnknownRequest(_))), "a play is not a publish");
    let stream_id = h.server.accept_play(id).expect("accept");
    h.flush();
    let events = h.take_client_events();
    assert!(events.contains(&ClientSessionEvent::PlaybackRequestAccepted), "{events:?}");

    let video = Bytes::from((0..9000u32).map(|i| i as u8).collect::<Vec<_>>());
    let audio = Bytes::from_static(&[0xaf, 1, 0x21, 0x10]);
    let mut wire = encode_media_message(9, 40, stream_id, &video).to_vec();
    wire.extend_from_slice(&encode_media_message(8, 63, stream_id, &audio));
    let events = to_client(&mut h, &wire);
    let got: Vec<(bool, u32, Bytes)> = events
        .into_iter()
        .filter_map(|e| match e {
            ClientSessionEvent::VideoDataReceived { data, timestamp, .. } => Some((true, timestamp.value, data)),
            ClientSessionEvent::AudioDataReceived { data, timestamp, .. } => Some((false, timestamp.value, data)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(true, 40, video), (false, 63, audio)]);
}

#[test]
fn a_refused_play_gets_an_error_status() {
    let (mut h, id, ..) = request_play("nothing");
    h.server.reject_play(id, "stream not live").expect("reject");
    h.flush();
    let events = h.take_client_events();
    assert!(
        events.iter().any(|e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { code } if code == "NetStream.Play.StreamNotFound")),
        "{events:?}"
    );
    // An answer to a request that was not made is an error.
    let (mut h, _id, ..) = request_play("s");
    assert!(matches!(h.server.accept_play(99), Err(RtmpError::UnknownRequest(99))));
}
