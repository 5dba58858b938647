//! TLS certificates for HTTPS (`[https]`, rustls): control's signaling,
//! player and API, and the shards' media listener. The certificate is chosen by the client's SNI name (exact, then a
//! `*.example.com` wildcard one label deep), else the default one. The
//! files are checked every `reload_check_s`; a changed certificate or key
//! is served from the next TLS handshake on, without a restart (a file that
//! does not load keeps the previous certificate, and says why in the log).
//! ALPN offers HTTP/2 and HTTP/1.1.

use crate::config::HttpsConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Key(String),
}

/// Reads a PEM chain and key into what rustls serves.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, msg: String| TlsError::File { path: path.to_path_buf(), msg };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(key_der).map_err(|e| TlsError::Key(format!("{}: {e}", key.display())))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::Key(format!("{} does not match {}: {e}", key.display(), cert.display())))?;
    Ok(ck)
}

/// One configured certificate: its files, the names it serves, what was
/// loaded and the files' times then.
struct Entry {
    names: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
    loaded: Option<Arc<CertifiedKey>>,
    stamp: Option<(SystemTime, SystemTime)>,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// The SNI resolver rustls asks at every handshake; its table is replaced
/// on reload.
#[derive(Default)]
pub struct SniResolver {
    table: RwLock<Table>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    /// The certificate for `name` (None: no SNI).
    pub fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = name.map(str::to_ascii_lowercase) {
            if let Some(k) = t.by_name.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = t.by_name.get(&format!("*.{parent}")) {
                    return Some(k.clone());
                }
            }
        }
        t.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// The configured certificates and the resolver that serves them.
pub struct CertStore {
    entries: Vec<Entry>,
    resolver: Arc<SniResolver>,
}

/// The files' modification times, or None when one is missing.
fn stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

impl CertStore {
    /// Loads every configured certificate; Err when one does not load (at
    /// start a bad file is a configuration error).
    pub fn load(cfg: &HttpsConfig) -> Result<CertStore, TlsError> {
        let mut entries = Vec::new();
        if !cfg.cert.as_os_str().is_empty() {
            entries.push(Entry { names: Vec::new(), cert: cfg.cert.clone(), key: cfg.key.clone(), loaded: None, stamp: None });
        }
        for c in &cfg.certs {
            let names = c.names.iter().map(|n| n.to_ascii_lowercase()).collect();
            entries.push(Entry { names, cert: c.cert.clone(), key: c.key.clone(), loaded: None, stamp: None });
        }
        for e in &mut entries {
            e.stamp = stamp(&e.cert, &e.key);
            e.loaded = Some(Arc::new(load_certified_key(&e.cert, &e.key)?));
        }
        let store = CertStore { entries, resolver: Arc::new(SniResolver::default()) };
        store.publish();
        Ok(store)
    }

    pub fn resolver(&self) -> Arc<SniResolver> {
        self.resolver.clone()
    }

    /// Reloads the certificates whose files changed; the number reloaded.
    /// A file that does not load now keeps the previous certificate.
    pub fn reload_changed(&mut self) -> usize {
        let mut reloaded = 0;
        for e in &mut self.entries {
            let now = stamp(&e.cert, &e.key);
            if now.is_none() || now == e.stamp {
                continue;
            }
            e.stamp = now;
            match load_certified_key(&e.cert, &e.key) {
                Ok(k) => {
                    e.loaded = Some(Arc::new(k));
                    reloaded += 1;
                    tracing::info!(cert = %e.cert.display(), names = ?e.names, "certificate reloaded");
                }
                Err(err) => tracing::error!(error = %err, "certificate changed on disk but does not load; serving the previous one"),
            }
        }
        if reloaded > 0 {
            self.publish();
        }
        reloaded
    }

    fn publish(&self) {
        let mut t = Table::default();
        for e in &self.entries {
            let Some(k) = &e.loaded else { continue };
            if e.names.is_empty() {
                t.default = Some(k.clone());
            }
            for n in &e.names {
                t.by_name.insert(n.clone(), k.clone());
            }
        }
        // Without a default, the first certificate answers clients without SNI.
        if t.default.is_none() {
            t.default = self.entries.iter().find_map(|e| e.loaded.clone());
        }
        *self.resolver.table.write().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

/// The rustls server configuration: certificates from `resolver`, ALPN
/// h2 then http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Key(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniCert;

    /// A self-signed certificate for `names`, written to `dir/{tag}.pem|key`.
    fn write_cert(dir: &Path, tag: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
        let c = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let (cert, key) = (dir.join(format!("{tag}.pem")), dir.join(format!("{tag}.key")));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        (cert, key, c.cert.der().to_vec())
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rts-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn served(r: &SniResolver, name: Option<&str>) -> Vec<u8> {
        r.pick(name).map(|k| k.cert[0].to_vec()).unwrap_or_default()
    }

    #[test]
    fn sni_picks_the_names_certificate_then_a_wildcard_then_the_default() {
        let d = dir("sni");
        let (dc, dk, default_der) = write_cert(&d, "default", &["edge.local"]);
        let (ac, ak, a_der) = write_cert(&d, "a", &["a.example.com"]);
        let (wc, wk, w_der) = write_cert(&d, "w", &["*.b.example.com"]);
        let cfg = HttpsConfig {
            cert: dc,
            key: dk,
            certs: vec![
                SniCert { names: vec!["A.example.com".into()], cert: ac, key: ak },
                SniCert { names: vec!["*.b.example.com".into()], cert: wc, key: wk },
            ],
            ..Default::default()
        };
        let store = CertStore::load(&cfg).unwrap();
        let r = store.resolver();
        assert_eq!(served(&r, Some("a.example.com")), a_der);
        assert_eq!(served(&r, Some("A.EXAMPLE.COM")), a_der);
        assert_eq!(served(&r, Some("x.b.example.com")), w_der);
        assert_eq!(served(&r, Some("y.x.b.example.com")), default_der, "a wildcard covers one label");
        assert_eq!(served(&r, Some("other.example.com")), default_der);
        assert_eq!(served(&r, None), default_der);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_replaced_file_is_served_after_the_next_check_and_a_bad_one_is_not() {
        let d = dir("reload");
        let (c, k, first) = write_cert(&d, "s", &["s.example.com"]);
        let mut store = CertStore::load(&HttpsConfig { cert: c.clone(), key: k.clone(), ..Default::default() }).unwrap();
        let r = store.resolver();
        assert_eq!(served(&r, None), first);
        assert_eq!(store.reload_changed(), 0, "nothing changed");
        // Same paths, new certificate (mtime moves forward).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, _, second) = write_cert(&d, "s", &["s.example.com"]);
        assert_ne!(first, second);
        assert_eq!(store.reload_changed(), 1);
        assert_eq!(served(&r, None), second);
        // A key that no longer matches: the previous certificate stays.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, other_key, _) = write_cert(&d, "other", &["x"]);
        std::fs::copy(&other_key, &k).unwrap();
        assert_eq!(store.reload_changed(), 0);
        assert_eq!(served(&r, None), second);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_or_mismatched_file_is_a_clear_error_at_start() {
        let d = dir("bad");
        let (c, _, _) = write_cert(&d, "c", &["c"]);
        let (_, k2, _) = write_cert(&d, "d", &["d"]);
        let err = CertStore::load(&HttpsConfig { cert: c.clone(), key: k2, ..Default::default() }).err().unwrap().to_string();
        assert!(err.contains("does not match"), "{err}");
        let err = CertStore::load(&HttpsConfig { cert: d.join("nope.pem"), key: d.join("nope.key"), ..Default::default() }).err().unwrap().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
