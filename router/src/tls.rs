//! HTTPS on the router's own port: a connection whose first byte is 0x16 (a
//! TLS handshake record) is TLS, anything else plain HTTP as before. The
//! certificate of each host is an exact-name leaf of the local CA
//! (`agentfs_registry::ca`), issued on first use for a name of the router's
//! grammar (`[<port>.][<instance>.]<app>.localhost`, `localhost`) and kept in
//! memory (at most [`CACHE_CAP`] hosts, the oldest dropped first) and in
//! `ca/hosts/`. Any other SNI gets no certificate: the handshake fails with
//! an alert. ALPN offers h2 and http/1.1.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use agentfs_registry::ca::{self, Authority};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::host::Host;

/// The first byte of a TLS connection (a handshake record).
pub const HANDSHAKE: u8 = 0x16;
/// Hosts whose certificate stays in memory.
pub const CACHE_CAP: usize = 1024;

/// The acceptor, or `None` (logged once, naming the file and the fix) when
/// the CA cannot be loaded: plain HTTP is served either way.
pub fn acceptor(home: &agentfs_registry::Home) -> Option<TlsAcceptor> {
    let ca = match Authority::load_or_create(home) {
        Ok(ca) => ca,
        Err(e) => {
            tracing::error!("HTTPS is off: {e}");
            return None;
        }
    };
    let resolver = Arc::new(Resolver { ca, cache: Mutex::new(Cache::default()) });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().ok()?;
    let mut config = config.with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(TlsAcceptor::from(Arc::new(config)))
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

struct Resolver {
    ca: Authority,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = Host::parse(hello.server_name()?).ok()?.name().to_owned();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = cache.keys.get(&host) {
            return Some(key.clone());
        }
        let key = match self.ca.leaf(&host).map_err(|e| e.to_string()).and_then(|leaf| certified(&leaf)) {
            Ok(key) => Arc::new(key),
            Err(e) => {
                tracing::warn!(%host, "no certificate: {e}");
                return None;
            }
        };
        if cache.order.len() >= CACHE_CAP
            && let Some(old) = cache.order.pop_front()
        {
            cache.keys.remove(&old);
        }
        cache.order.push_back(host.clone());
        cache.keys.insert(host, key.clone());
        Some(key)
    }
}

fn certified(leaf: &ca::Leaf) -> Result<CertifiedKey, String> {
    let cert = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let signer = any_supported_type(&key).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert], signer))
}
