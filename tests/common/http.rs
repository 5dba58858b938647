//! A tiny blocking HTTP/1.1 server for fixture pages and fake endpoints.
//!
//! One thread accepts; each connection gets its own thread (browsers open speculative
//! connections that never send a request, which would stall a sequential server).
//! One request per connection (`Connection: close`). Every request is recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Result;

/// Largest request body the server accepts (SDP offers are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// A parsed request.
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path including the query string, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Value of query parameter `name` (no percent-decoding; tests use plain values).
    pub fn query(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response to send.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn html(body: impl Into<Vec<u8>>) -> HttpResponse {
        Self::new(200, "text/html; charset=utf-8", body)
    }

    pub fn not_found() -> HttpResponse {
        Self::new(404, "text/plain", "not found")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync;

/// The server; stops accepting on drop.
pub struct TestHttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestHttpServer {
    /// Binds `bind` (port 0 picks a free port) and serves `handler` on a background thread.
    pub fn start(
        bind: SocketAddr,
        handler: impl Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    ) -> Result<Self> {
        let listener = TcpListener::bind(bind).with_context(|| format!("bind {bind}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop2, requests2) = (Arc::clone(&stop), Arc::clone(&requests));
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let (handler, requests) = (Arc::clone(&handler), Arc::clone(&requests2));
                std::thread::spawn(move || {
                    // Errors only mean a client went away; nothing to report.
                    let _ = serve_one(stream, &*handler, &requests);
                });
            }
        });
        Ok(TestHttpServer {
            addr,
            stop,
            requests,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for TestHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept. If this thread already left the namespace the
        // connect fails and the acceptor is left behind, blocked on a dead namespace.
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<HttpRequest>>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = read_request(&mut reader)?;
    let response = handler(&request);
    log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    write_response(stream, &response)
}

fn read_request(reader: &mut impl BufRead) -> Result<HttpRequest> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    let mut request = HttpRequest {
        method: method.into(),
        target: target.into(),
        ..Default::default()
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed inside headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            request
                .headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = request
        .header("content-length")
        .map(str::parse)
        .transpose()?
        .unwrap_or(0);
    if len > MAX_BODY {
        bail!("body of {len} bytes is too large");
    }
    request.body.resize(len, 0);
    reader.read_exact(&mut request.body)?;
    Ok(request)
}

fn write_response(mut stream: TcpStream, response: &HttpResponse) -> Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()?;
    Ok(())
}
