//! HTTPS on the router's own port: a connection whose first byte is 0x16 (a
//! TLS handshake record) is TLS, anything else plain HTTP as before. The
//! certificate of each host is an exact-name leaf of the local CA
//! (`agentfs_registry::ca`), issued on first use, and only for a host the
//! router serves now: the dashboard (`localhost`, `agentfs.localhost`), a
//! static route's host, or an app host that resolves to a route, a starting
//! or a crashed instance. Any other SNI (another domain, an unknown app, an
//! instance that does not run) gets no certificate: the handshake fails with
//! an alert and nothing is minted, kept or written, so a client cycling
//! through names costs neither memory nor disk. Leaves stay in memory (at
//! most [`CACHE_CAP`] hosts, the oldest dropped first) and in `ca/hosts/`
//! (at most `ca::HOSTS_CAP` files). ALPN offers h2 and http/1.1.
//!
//! The ClientHello is read first ([`LazyConfigAcceptor`]) so that a leaf is
//! issued on a blocking thread, with no lock held, before the handshake
//! goes on: a new host never stalls the connections of others.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

use agentfs_registry::ca::{self, Authority};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::host::Host;
use crate::state::Shared;
use crate::table::Lookup;

/// The first byte of a TLS connection (a handshake record).
pub const HANDSHAKE: u8 = 0x16;
/// Hosts whose certificate stays in memory.
pub const CACHE_CAP: usize = 1024;

/// The TLS side of the router's port.
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    certs: Arc<Certs>,
}

impl Tls {
    /// `None` (logged once, naming the file and the fix) when the CA cannot
    /// be loaded: plain HTTP is served either way.
    pub fn new(shared: &Arc<Shared>) -> Option<Tls> {
        let ca = match Authority::load_or_create(&shared.config.home) {
            Ok(ca) => ca,
            Err(e) => {
                tracing::error!("HTTPS is off: {e}");
                return None;
            }
        };
        let certs = Arc::new(Certs { ca, shared: shared.clone(), cache: Mutex::new(Cache::default()) });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config =
            rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().ok()?;
        let mut config = config.with_no_client_auth().with_cert_resolver(Arc::new(Resolver(certs.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(Tls { config: Arc::new(config), certs })
    }

    /// The handshake: reads the ClientHello, has the leaf of its SNI ready
    /// if the host is served, then completes (or fails with an alert).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let host = start.client_hello().server_name().and_then(served_name);
        if let Some(host) = host
            && self.certs.cached(&host).is_none()
            && serves(&self.certs.shared, &host)
        {
            let certs = self.certs.clone();
            let _ = tokio::task::spawn_blocking(move || certs.issue(host)).await;
        }
        start.into_stream(self.config.clone()).await
    }
}

/// The normal form of an SNI of ours (`*.localhost` or `localhost`).
fn served_name(sni: &str) -> Option<String> {
    Some(Host::parse(sni).ok()?.name().to_owned())
}

/// Whether `host` (normalised) is one the router answers for now.
fn serves(shared: &Shared, host: &str) -> bool {
    let Ok(host) = Host::parse(host) else { return false };
    !matches!(shared.table().resolve(&host), Lookup::Unknown)
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

/// The leaves of the hosts served, by name.
struct Certs {
    ca: Authority,
    shared: Arc<Shared>,
    cache: Mutex<Cache>,
}

impl Certs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.lock().keys.get(host).cloned()
    }

    /// Reads (from `ca/hosts/`) or issues the leaf of `host`, then caches it.
    /// Called for served hosts only; the lock is not held while signing.
    fn issue(&self, host: String) -> Option<Arc<CertifiedKey>> {
        let key = match self.ca.leaf(&host).map_err(|e| e.to_string()).and_then(|leaf| certified(&leaf)) {
            Ok(key) => Arc::new(key),
            Err(e) => {
                tracing::warn!(%host, "no certificate: {e}");
                return None;
            }
        };
        let mut cache = self.lock();
        if let Some(key) = cache.keys.get(&host) {
            return Some(key.clone());
        }
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

/// rustls's view of [`Certs`]: the leaf [`Tls::accept`] made ready. A leaf
/// evicted meanwhile (over [`CACHE_CAP`] new hosts in that instant) is
/// issued here, on the connection's own thread.
struct Resolver(Arc<Certs>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = served_name(hello.server_name()?)?;
        if let Some(key) = self.0.cached(&host) {
            return Some(key);
        }
        serves(&self.0.shared, &host).then(|| self.0.issue(host)).flatten()
    }
}

fn certified(leaf: &ca::Leaf) -> Result<CertifiedKey, String> {
    let cert = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let signer = any_supported_type(&key).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert], signer))
}
