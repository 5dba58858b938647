//! HTTPS for signaling, the player and the API, and the shards' media
//! listener over TLS (issue 19, point 1), with a CA the test makes:
//! Chromium plays over `https://` through WHEP, RTS signaling and LL-HLS
//! from the media listener, HTTP/2 and HTTP/1.1 are both offered, and a
//! certificate replaced on disk is served to the next connection (both
//! listeners) without a restart.

mod common;
mod rig;

use anyhow::{Context, Result};
use base64::Engine as _;
use rig::{Mode, Rig};
use rustls_pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const HTTPS: &str = "https://10.200.0.1:9443";
const CONTROL_TLS: &str = "10.200.0.1:9443";
/// `[https] media_listen`'s default port.
const MEDIA_TLS: &str = "10.200.0.1:8443";

struct Ca {
    params: rcgen::CertificateParams,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new() -> Result<Ca> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "rts test CA");
        let key = rcgen::KeyPair::generate()?;
        let cert = p.self_signed(&key)?;
        Ok(Ca { params: p, cert, key })
    }

    /// A server certificate for the test's address, signed by this CA,
    /// written with the CA after it (the chain a server sends): its DER.
    fn issue(&self, cert_path: &Path, key_path: &Path, serial: u64) -> Result<Vec<u8>> {
        let mut p = rcgen::CertificateParams::new(vec!["rts.test".to_string()])?;
        p.subject_alt_names.push(rcgen::SanType::IpAddress("10.200.0.1".parse()?));
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(&key, &issuer)?;
        std::fs::write(cert_path, format!("{}{}", cert.pem(), self.cert.pem()))?;
        std::fs::write(key_path, key.serialize_pem())?;
        Ok(cert.der().to_vec())
    }

    /// base64(SHA-256(SubjectPublicKeyInfo)) of the CA: Chromium accepts
    /// chains with it (`--ignore-certificate-errors-spki-list`).
    fn spki_hash(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &rcgen::PublicKeyData::subject_public_key_info(&self.key));
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS connection verified against the test CA: the server's leaf and
/// the ALPN protocol it chose (offering `alpn`).
fn handshake(ca: &Ca, addr: &str, alpn: &[&[u8]]) -> Result<(Vec<u8>, Option<Vec<u8>>, TlsStream)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert.der().to_vec()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("10.200.0.1")?.to_owned())?;
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    let leaf = s.conn.peer_certificates().and_then(|c| c.first()).context("no certificate")?.to_vec();
    let alpn = s.conn.alpn_protocol().map(|p| p.to_vec());
    Ok((leaf, alpn, s))
}

#[test]
fn chromium_plays_over_https_and_a_new_certificate_is_served_without_a_restart() -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("rts-https-{}-{:x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let ca = Ca::new()?;
    let first = ca.issue(&cert, &key, 1)?;
    let toml = format!("[https]\nlisten = \"{CONTROL_TLS}\"\ncert = \"{}\"\nkey = \"{}\"\nreload_check_s = 1\n", cert.display(), key.display());
    let rig = Rig::start(Mode::Serve, &toml)?;
    let _publisher = rig.publish("live/tls")?;
    rig.wait_live("live", "tls", Duration::from_secs(20))?;

    // HTTP/2 and HTTP/1.1 over TLS, verified against the CA.
    let (leaf, alpn, _) = handshake(&ca, CONTROL_TLS, &[b"h2", b"http/1.1"])?;
    assert_eq!(leaf, first);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "HTTP/2 offered");
    let (_, alpn, mut s) = handshake(&ca, CONTROL_TLS, &[b"http/1.1"])?;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    s.write_all(b"GET /api/v1/streams HTTP/1.1\r\nHost: 10.200.0.1\r\nConnection: close\r\n\r\n")?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"tls\""), "the API over HTTPS: {resp}");

    // The media listener over TLS: the playlist, and an FLV stream's header.
    std::thread::sleep(Duration::from_millis(4500)); // a complete 2 s segment (GOP 60 at 30 fps)
    let (leaf, _, mut s) = handshake(&ca, MEDIA_TLS, &[b"http/1.1"])?;
    assert_eq!(leaf, first, "the same certificate on the media listener");
    s.write_all(b"GET /live/tls.m3u8 HTTP/1.1\r\nHost: 10.200.0.1\r\nConnection: close\r\n\r\n")?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("#EXT-X-PART:"), "LL-HLS over TLS: {resp}");
    // A whole segment (larger than one TLS write buffer) over TLS is the
    // same bytes as over plain HTTP.
    let segment = resp.lines().find(|l| l.ends_with(".m4s") && !l.starts_with('#')).context("a complete segment")?.to_string();
    let body = |raw: Vec<u8>| -> Result<Vec<u8>> {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").context("response head")? + 4;
        Ok(raw[at..].to_vec())
    };
    let request = format!("GET /live/{segment} HTTP/1.1\r\nHost: 10.200.0.1\r\nConnection: close\r\n\r\n");
    let (_, _, mut s) = handshake(&ca, MEDIA_TLS, &[b"http/1.1"])?;
    s.write_all(request.as_bytes())?;
    let mut over_tls = Vec::new();
    let _ = s.read_to_end(&mut over_tls);
    let mut plain = std::net::TcpStream::connect("10.200.0.1:8088")?;
    plain.write_all(request.as_bytes())?;
    let mut over_plain = Vec::new();
    plain.read_to_end(&mut over_plain)?;
    let (over_tls, over_plain) = (body(over_tls)?, body(over_plain)?);
    assert!(over_plain.len() > 64 * 1024, "segment of {} bytes", over_plain.len());
    assert!(over_tls == over_plain, "{} bytes over TLS, {} over plain HTTP", over_tls.len(), over_plain.len());
    let (_, _, mut s) = handshake(&ca, MEDIA_TLS, &[b"http/1.1"])?;
    s.write_all(b"GET /live/tls.flv HTTP/1.1\r\nHost: 10.200.0.1\r\n\r\n")?;
    let mut flv = vec![0u8; 0];
    let mut chunk = [0u8; 4096];
    while flv.len() < 2048 {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "FLV over TLS ended early");
        flv.extend_from_slice(&chunk[..n]);
    }
    let body_at = flv.windows(4).position(|w| w == b"\r\n\r\n").context("no FLV response head")? + 4;
    assert_eq!(&flv[body_at..body_at + 3], b"FLV", "HTTP-FLV over TLS");
    drop(s);

    // The player page and its signaling over https://, WHEP and RTS, and
    // LL-HLS from the media listener over TLS (a page served over https
    // may not fetch plain http).
    let spki = format!("--ignore-certificate-errors-spki-list={}", ca.spki_hash());
    for signaling in ["whep", "rts", "hls"] {
        let mut c = common::Chromium::launch_with(&[&spki])?;
        let query = if signaling == "hls" { "protocol=hls".to_string() } else { format!("signaling={signaling}") };
        c.navigate(&format!("{HTTPS}/play/live/tls?{query}"))?;
        if let Err(e) = c.wait_for("window.rts && (await window.rts.stats()).framesDecoded >= 30", Duration::from_secs(30)) {
            let state = c.eval("JSON.stringify({state: window.rts && window.rts.state, error: window.rts && String(window.rts.error), origin: location.origin})");
            anyhow::bail!("{signaling} over https: {e:#}; page: {state:?}; console: {:?}\n{}", c.console(), rig.logs());
        }
        let origin = c.eval("location.origin")?;
        assert_eq!(origin, HTTPS, "{signaling}: the page came over https");
    }

    // A new certificate on disk: the next connection gets it, no restart.
    let second = ca.issue(&cert, &key, 2)?;
    assert_ne!(first, second);
    for addr in [CONTROL_TLS, MEDIA_TLS] {
        let mut served = Vec::new();
        for _ in 0..50 {
            served = handshake(&ca, addr, &[b"http/1.1"])?.0;
            if served == second {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(served, second, "{addr}: the replaced certificate within 5 s");
    }
    assert!(rig.logs().contains("certificate reloaded"), "{}", rig.logs());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
