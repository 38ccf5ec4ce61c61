//! The QUIC transport between gateways: one [`Transport`] (a single `quinn::Endpoint`) both
//! serves the peers that connect to this gateway and connects to the peers it sends to.
//!
//! ## Trust model
//!
//! - **Mutual TLS, TLS 1.3 only**, with rustls' **ring** provider (no aws-lc, no OpenSSL). Both
//!   sides present the TLS certificate the federation CA issued them
//!   ([`tsunagi_certs::Credentials`]); client certificates are mandatory.
//! - **Trust** ([`Trust`]) is the federation CA certificate plus its CRL(s): a peer is accepted
//!   when its certificate chains to the CA and is not revoked. The CRL is checked by rustls'
//!   WebPKI verifiers on both sides (`with_crls`) and can be replaced at run time with
//!   [`Transport::reload_trust`]: new handshakes use the new trust at once, live incoming
//!   connections whose certificate it no longer accepts are closed, and cached outgoing
//!   connections are dropped.
//! - **ALPN** `tsunagi/1` ([`ALPN`]) on both sides; a peer speaking anything else is refused.
//! - **Identity comes from the certificate**, never from the address: the peer's org is the
//!   certificate's URI SAN `urn:tsunagi:org:<scheme>:<code>`
//!   ([`tsunagi_certs::org_of_certificate`]). A server must name the org the sender meant to
//!   reach, else [`TransportError::PeerMismatch`]; a handler learns the sending org with each
//!   [`InboundMessage`]. The client connects to the directory's `address` (ip:port) and checks
//!   the server's certificate against the directory's `host` ([`Transport::request_to`]):
//!   certificates carry the gateway's host as a DNS or IP SAN.
//!
//! ## Exchange
//!
//! One bidirectional stream per message: the sender writes the message and finishes its side,
//! the receiver's handler returns the reply (a receipt), which is written back and finished.
//! Both directions are capped at [`TransportConfig::max_message_bytes`]; an over-size message
//! reaches the handler as [`InboundMessage::TooLarge`] so that it can reply with a clear refusal.
//! A TLS 1.3 client learns that the server refused its certificate only when it first reads,
//! so such a refusal surfaces from [`Transport::request`] as [`TransportError::Tls`] with the
//! TLS alert and the server's reason, whether it arrives while connecting, sending or reading.
//!
//! ## Requests back on the same connection
//!
//! While it handles a peer's message, the receiver may ask that peer something on the connection
//! the message came in on ([`Transport::request_back`]: a stream the server opens; used for the
//! consent fetch of slim envelopes, see `tsunagi_protocol::fetch`). The client side serves such
//! streams on its outgoing connections with the same handler as [`Transport::serve`], the peer
//! org being the server's certificate org it checked when connecting; at most
//! [`BACK_STREAMS`] at once per connection.
//!
//! Outgoing connections are cached per peer org and shared by concurrent requests (at most
//! [`TransportConfig::per_peer_streams`] at once); a cached connection found dead during a
//! request is replaced once, transparently, and the message sent again (receivers deduplicate
//! by message id, so delivery is at least once).

pub mod admission;
mod codes;
mod error;
mod recognised;
mod tls;

#[cfg(test)]
mod tests;

pub use error::{alert_name, RefusedBy, TransportError};
pub use tls::Trust;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use quinn::{
    ClosedStream, ConnectError, Connection, ConnectionError, ReadError, ReadToEndError, RecvStream,
    SendStream, VarInt, WriteError,
};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};
use tsunagi_protocol::org::OrgId;

use error::{from_connection_error, is_retryable_loss, Phase};

/// The ALPN protocol id of the gateway-to-gateway protocol.
pub const ALPN: &[u8] = b"tsunagi/1";

/// How many streams a server may open at once on one of our outgoing connections
/// ([`Transport::request_back`]).
pub const BACK_STREAMS: u32 = 8;

tokio::task_local! {
    /// The connection whose stream a handler is answering (see [`Transport::request_back`]).
    static CURRENT: Connection;
}

/// The handler of [`Transport::serve`], type-erased so that outgoing connections can use it too.
type Handler =
    dyn Fn(InboundMessage) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync;

/// Limits and timeouts of a [`Transport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// The largest message accepted, and the largest reply read (default 8 MiB).
    pub max_message_bytes: usize,
    /// Concurrent streams per peer, in each direction (default 64): outgoing requests to one
    /// peer beyond this wait; a peer may open this many streams on its connection to us.
    pub per_peer_streams: usize,
    /// Incoming connections one peer org may hold open at once (default 8): the streams cap
    /// holds per connection, so without this a peer could open connections until the host ran
    /// out. A gateway keeps one connection per peer; a new one past the cap is closed at once
    /// (transient for the peer: it retries).
    pub per_peer_connections: usize,
    /// A connection with no traffic for this long is closed (default 30 s). Outgoing
    /// connections send keep-alives at a third of it while they live.
    pub idle_timeout: Duration,
    /// How long a QUIC + TLS handshake may take (default 10 s), both ways: an incoming one not
    /// done by then is dropped.
    pub connect_timeout: Duration,
    /// Incoming handshakes in progress at once (default 64), a quarter of them from any one
    /// source; past either cap a new one is refused at once, before any TLS work (the client
    /// sees the connection refused, which is transient: a gateway retries). An address not
    /// validated yet is sent a QUIC Retry first. See [`admission`].
    pub max_handshakes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_bytes: 8 * 1024 * 1024,
            per_peer_streams: 64,
            per_peer_connections: 8,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_handshakes: 64,
        }
    }
}

/// What a handler passed to [`Transport::serve`] receives: one message from an authenticated
/// peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMessage {
    /// A complete message.
    Message {
        /// The sending org, from its TLS certificate.
        peer: OrgId,
        /// The message bytes.
        bytes: Vec<u8>,
    },
    /// A message longer than [`TransportConfig::max_message_bytes`]: it was not read to the
    /// end (the sender was told to stop). The handler's reply still reaches the sender.
    TooLarge {
        /// The sending org, from its TLS certificate.
        peer: OrgId,
        /// Our limit.
        max: usize,
        /// How many bytes had arrived when reading stopped (more than `max`).
        len_at_least: usize,
    },
}

impl InboundMessage {
    /// The sending org.
    pub fn peer(&self) -> &OrgId {
        match self {
            InboundMessage::Message { peer, .. } | InboundMessage::TooLarge { peer, .. } => peer,
        }
    }
}

/// A gateway's QUIC endpoint, server and client at once. Cloning it is cheap and shares the
/// endpoint, its connections and its trust.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("org", &self.inner.org)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

struct Inner {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    org: OrgId,
    cfg: TransportConfig,
    /// Our certificate chain and key; replaced by [`Transport::reload_identity`].
    identity: RwLock<tls::Identity>,
    trust: RwLock<TrustState>,
    peers: Mutex<HashMap<OrgId, Arc<PeerSlot>>>,
    /// Live incoming connections by `stable_id`, re-checked when the trust is reloaded.
    incoming: Mutex<HashMap<usize, (OrgId, Connection)>>,
    connections_opened: AtomicUsize,
    /// Cached connections found dead during a request and replaced.
    connections_replaced: AtomicUsize,
    /// The handler given to [`Transport::serve`], which also answers requests a server sends
    /// back on our outgoing connections.
    handler: RwLock<Option<Arc<Handler>>>,
    /// Which incoming handshakes are served ([`admission`]).
    admission: Arc<admission::Admission>,
}

/// The parts of the TLS configuration that change with [`Transport::reload_trust`].
struct TrustState {
    client: quinn::ClientConfig,
    client_verifier: Arc<dyn ClientCertVerifier>,
    /// Bumped by each reload; cached connections from an older generation are not reused.
    generation: u64,
}

/// Per peer org: the cached connection and the stream limit.
struct PeerSlot {
    conn: tokio::sync::Mutex<Option<Cached>>,
    permits: Semaphore,
}

struct Cached {
    conn: Connection,
    generation: u64,
    /// The server name its certificate was checked against.
    host: String,
    /// Dropped with the cache entry (replaced, forgotten, or cleared by a trust reload): then
    /// the connection serves no more streams back ([`Inner::serve_back`]), and it closes once
    /// the requests still using it finish.
    _retire: watch::Sender<()>,
}

/// What [`Inner::serve_back`] needs of a new cached connection: the signal that it left the
/// cache, and the trust generation it was verified under.
struct ServeBack {
    retired: watch::Receiver<()>,
    generation: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a request failed on a connection: lost (may be replaced) or otherwise.
enum Failure {
    Lost(ConnectionError),
    Other(TransportError),
}

impl Transport {
    /// Binds a UDP socket at `addr` (port 0 picks a free port) and sets up the endpoint with our
    /// credentials (`creds.tls_cert_chain()`, `creds.tls_key`) and `trust`.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        creds: &tsunagi_certs::Credentials,
        trust: &Trust,
        cfg: TransportConfig,
    ) -> Result<Transport, TransportError> {
        if cfg.max_message_bytes == 0 {
            return Err(TransportError::config(
                "max_message_bytes must be at least 1",
            ));
        }
        let identity = tls::Identity {
            chain: creds.tls_cert_chain(),
            key: creds.tls_key.clone_key(),
        };
        let built = tls::build(&identity, trust, &cfg)?;
        let endpoint =
            quinn::Endpoint::server(built.server, addr).map_err(|e| TransportError::Bind {
                addr,
                cause: e.to_string(),
            })?;
        let local_addr = endpoint.local_addr().map_err(|e| TransportError::Bind {
            addr,
            cause: e.to_string(),
        })?;
        info!(org = %creds.org, addr = %local_addr, "QUIC endpoint bound");
        let admission = admission::Admission::new(cfg.max_handshakes);
        Ok(Transport {
            inner: Arc::new(Inner {
                endpoint,
                local_addr,
                org: creds.org.clone(),
                cfg,
                identity: RwLock::new(identity),
                trust: RwLock::new(TrustState {
                    client: built.client,
                    client_verifier: built.client_verifier,
                    generation: 0,
                }),
                peers: Mutex::new(HashMap::new()),
                incoming: Mutex::new(HashMap::new()),
                connections_opened: AtomicUsize::new(0),
                connections_replaced: AtomicUsize::new(0),
                handler: RwLock::new(None),
                admission,
            }),
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our TLS certificate (the end-entity certificate presented in handshakes).
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.inner
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .chain[0]
            .clone()
    }

    /// Our org (from our TLS certificate).
    pub fn org(&self) -> &OrgId {
        &self.inner.org
    }

    /// How many outgoing connections this transport has established since it was bound
    /// (requests share cached connections, so this grows only on first contact, after a
    /// connection died, or after a trust reload).
    pub fn connection_count(&self) -> usize {
        self.inner.connections_opened.load(Ordering::Relaxed)
    }

    /// Incoming handshakes refused past the caps since the endpoint was bound
    /// ([`TransportConfig::max_handshakes`]).
    pub fn handshakes_refused(&self) -> admission::Counts {
        self.inner.admission.refused()
    }

    /// How many cached connections were found dead during a request and replaced.
    #[cfg(test)]
    pub(crate) fn connections_replaced(&self) -> usize {
        self.inner.connections_replaced.load(Ordering::Relaxed)
    }

    /// Replaces the CA/CRL trust without a restart: new handshakes (both ways) use `trust` at
    /// once, live incoming connections whose client certificate `trust` refuses (e.g. newly
    /// revoked) are closed, and cached outgoing connections are dropped so that the next
    /// request re-verifies the server. Requests already in flight finish on their connection.
    pub fn reload_trust(&self, trust: &Trust) -> Result<(), TransportError> {
        let inner = &self.inner;
        let built = {
            let identity = inner.identity.read().unwrap_or_else(|e| e.into_inner());
            tls::build(&identity, trust, &inner.cfg)?
        };
        inner.endpoint.set_server_config(Some(built.server));
        let generation = {
            let mut state = inner.trust.write().unwrap_or_else(|e| e.into_inner());
            state.client = built.client;
            state.client_verifier = built.client_verifier;
            state.generation += 1;
            state.generation
        };
        for slot in lock(&inner.peers).values() {
            // A slot locked by a request now is skipped: its generation check drops it.
            if let Ok(mut cached) = slot.conn.try_lock() {
                *cached = None;
            }
        }
        let live: Vec<(OrgId, Connection)> = lock(&inner.incoming).values().cloned().collect();
        let mut closed = 0;
        for (peer, conn) in live {
            if !inner.recheck_incoming(&peer, &conn) {
                closed += 1;
            }
        }
        info!(
            org = %inner.org,
            generation,
            incoming_closed = closed,
            "trust reloaded"
        );
        Ok(())
    }

    /// Replaces our own TLS certificate and key without a restart (credential rotation), with
    /// `trust` as in [`Transport::reload_trust`]: new handshakes both ways present the new
    /// certificate, cached outgoing connections are dropped; live incoming connections finish on
    /// the certificate they were made with. The credentials must name our org.
    pub fn reload_identity(
        &self,
        creds: &tsunagi_certs::Credentials,
        trust: &Trust,
    ) -> Result<(), TransportError> {
        if creds.org != self.inner.org {
            return Err(TransportError::config(format!(
                "the new credentials are for {}, this endpoint is {}",
                creds.org, self.inner.org
            )));
        }
        let identity = tls::Identity {
            chain: creds.tls_cert_chain(),
            key: creds.tls_key.clone_key(),
        };
        // Check that it builds before it replaces the one in use.
        tls::build(&identity, trust, &self.inner.cfg)?;
        *self
            .inner
            .identity
            .write()
            .unwrap_or_else(|e| e.into_inner()) = identity;
        self.reload_trust(trust)?;
        info!(org = %self.inner.org, "TLS credentials reloaded");
        Ok(())
    }

    /// Sends `message` to `peer` at `addr` and returns its reply.
    ///
    /// Uses a fresh bidirectional stream of the connection cached for `peer` (or a new one),
    /// finishes the send side, and reads the whole reply (at most
    /// [`TransportConfig::max_message_bytes`], else [`TransportError::TooLarge`]). The server's
    /// certificate must name `peer` ([`TransportError::PeerMismatch`] otherwise). At most
    /// [`TransportConfig::per_peer_streams`] requests to one peer run at once; others wait.
    /// A cached connection found dead is replaced once and the message sent again.
    ///
    /// A refused certificate (either way) is [`TransportError::Tls`], not transient.
    ///
    /// The server certificate is checked against the IP of `addr`; use
    /// [`Transport::request_to`] when the certificate carries a DNS name.
    pub async fn request(
        &self,
        peer: &OrgId,
        addr: SocketAddr,
        message: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        self.request_to(peer, addr, &addr.ip().to_string(), message)
            .await
    }

    /// As [`Transport::request`], connecting to `addr` and checking the server certificate
    /// against `host` (the directory's `host`: a DNS name or an IP).
    pub async fn request_to(
        &self,
        peer: &OrgId,
        addr: SocketAddr,
        host: &str,
        message: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let inner = &self.inner;
        let slot = inner.slot(peer);
        let _permit = slot
            .permits
            .acquire()
            .await
            .map_err(|_| TransportError::Closed)?;
        let (conn, back) = inner.connection(&slot, peer, addr, host).await?;
        let fresh = back.is_some();
        if let Some(back) = back {
            inner.clone().serve_back(peer.clone(), conn.clone(), back);
        }
        debug!(peer = %peer, addr = %addr, len = message.len(), "sending message");
        match inner.exchange(&conn, addr, message).await {
            Ok(reply) => Ok(reply),
            Err(Failure::Lost(e)) if !fresh && is_retryable_loss(&e) => {
                info!(peer = %peer, addr = %addr, reason = %e, "cached connection lost; reconnecting once");
                inner.forget(&slot, &conn).await;
                inner.connections_replaced.fetch_add(1, Ordering::Relaxed);
                let (conn, back) = inner.connection(&slot, peer, addr, host).await?;
                if let Some(back) = back {
                    inner.clone().serve_back(peer.clone(), conn.clone(), back);
                }
                inner
                    .exchange(&conn, addr, message)
                    .await
                    .map_err(|f| f.into_error(addr))
            }
            Err(f) => Err(f.into_error(addr)),
        }
        .inspect(|reply| {
            debug!(peer = %peer, addr = %addr, len = reply.len(), "reply received");
        })
        .inspect_err(|e| {
            debug!(peer = %peer, addr = %addr, error = %e, transient = e.is_transient(), "request failed");
        })
    }

    /// Serves incoming connections until the endpoint is closed ([`Transport::close`]).
    ///
    /// Each connection's peer org is read from its (rustls-verified) client certificate; a
    /// connection without one is closed. Each bidirectional stream carries one message, read up
    /// to [`TransportConfig::max_message_bytes`] and passed to `handler` with the peer org (or
    /// [`InboundMessage::TooLarge`]); the bytes `handler` returns are written back as the reply.
    /// Streams run concurrently, each in its own task. If `handler` panics, the stream is
    /// reset so the sender sees a failure, not an empty reply.
    pub async fn serve<H, F>(&self, handler: H)
    where
        H: Fn(InboundMessage) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<u8>> + Send + 'static,
    {
        let handler: Arc<Handler> = Arc::new(move |m| Box::pin(handler(m)));
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler.clone());
        info!(org = %self.inner.org, addr = %self.inner.local_addr, "serving tsunagi/1");
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let Some((incoming, slot)) = self.inner.admission.admit(incoming) else {
                continue;
            };
            let inner = self.inner.clone();
            let handler = handler.clone();
            tokio::spawn(async move { inner.serve_connection(incoming, handler, slot).await });
        }
        info!(org = %self.inner.org, addr = %self.inner.local_addr, "endpoint closed; no longer serving");
    }

    /// Sends `message` to `peer` on the connection the message being handled came in on (called
    /// from a [`Transport::serve`] handler; else on a live connection `peer` opened to us) and
    /// returns its reply, within `timeout`.
    ///
    /// [`TransportError::Closed`] when there is no such connection; a peer that does not answer
    /// such requests (it serves none) runs into the timeout.
    pub async fn request_back(
        &self,
        peer: &OrgId,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let current = CURRENT
            .try_with(Connection::clone)
            .ok()
            .filter(|c| c.close_reason().is_none() && peer_org(c).is_ok_and(|o| o == *peer));
        let conn = match current {
            Some(c) => c,
            None => lock(&self.inner.incoming)
                .values()
                .filter(|(org, c)| org == peer && c.close_reason().is_none())
                .map(|(_, c)| c.clone())
                .last()
                .ok_or(TransportError::Closed)?,
        };
        let addr = conn.remote_address();
        debug!(peer = %peer, addr = %addr, len = message.len(), "asking back on the peer's connection");
        match tokio::time::timeout(timeout, self.inner.exchange(&conn, addr, message)).await {
            Err(_) => Err(TransportError::Timeout {
                addr,
                during: "waiting for the answer of",
                after: Some(timeout),
            }),
            Ok(r) => r.map_err(|f| f.into_error(addr)),
        }
    }

    /// Closes the endpoint (every connection, with a "shutting down" code) and waits until the
    /// peers have been told.
    /// It also drops the handler given to [`Transport::serve`]: the handler holds its
    /// gateway, which holds this transport, and only this breaks that cycle (an in-process
    /// gateway that was shut down then releases its store).
    pub async fn close(&self) {
        info!(org = %self.inner.org, addr = %self.inner.local_addr, "closing QUIC endpoint");
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.inner
            .endpoint
            .close(codes::SHUTDOWN, b"gateway shutting down");
        lock(&self.inner.peers).clear();
        lock(&self.inner.incoming).clear();
        self.inner.endpoint.wait_idle().await;
    }
}

impl Failure {
    fn into_error(self, addr: SocketAddr) -> TransportError {
        match self {
            Failure::Lost(e) => from_connection_error(e, addr, Phase::Exchange),
            Failure::Other(e) => e,
        }
    }
}

/// The certificate chain the peer presented (verified by rustls during the handshake).
fn peer_certs(conn: &Connection) -> Result<Vec<CertificateDer<'static>>, String> {
    conn.peer_identity()
        .ok_or_else(|| "the peer presented no certificate".to_owned())?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map(|certs| *certs)
        .map_err(|_| "the peer identity is not a certificate chain".to_owned())
}

/// The org named by the peer's leaf certificate.
fn peer_org(conn: &Connection) -> Result<OrgId, String> {
    let certs = peer_certs(conn)?;
    let leaf = certs
        .first()
        .ok_or_else(|| "the peer presented an empty certificate chain".to_owned())?;
    tsunagi_certs::org_of_certificate(leaf).map_err(|e| e.to_string())
}

/// Whether the handshake negotiated ALPN `tsunagi/1`.
fn alpn_ok(conn: &Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}

impl Inner {
    fn slot(&self, peer: &OrgId) -> Arc<PeerSlot> {
        lock(&self.peers)
            .entry(peer.clone())
            .or_insert_with(|| {
                Arc::new(PeerSlot {
                    conn: tokio::sync::Mutex::new(None),
                    permits: Semaphore::new(self.cfg.per_peer_streams),
                })
            })
            .clone()
    }

    fn generation(&self) -> u64 {
        self.trust
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// The cached connection to `peer` at `addr` if it is alive and from the current trust,
    /// else a new one (cached). `true` when new.
    async fn connection(
        &self,
        slot: &PeerSlot,
        peer: &OrgId,
        addr: SocketAddr,
        host: &str,
    ) -> Result<(Connection, Option<ServeBack>), TransportError> {
        let mut cached = slot.conn.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.generation == self.generation()
                && c.conn.close_reason().is_none()
                && c.conn.remote_address() == addr
                && c.host == host
            {
                return Ok((c.conn.clone(), None));
            }
        }
        // Dropping our handle; requests still using the old connection keep it open until done.
        *cached = None;
        let (conn, generation) = self.connect(peer, addr, host).await?;
        let (retire, retired) = watch::channel(());
        *cached = Some(Cached {
            conn: conn.clone(),
            generation,
            host: host.to_owned(),
            _retire: retire,
        });
        Ok((
            conn,
            Some(ServeBack {
                retired,
                generation,
            }),
        ))
    }

    /// Forgets `conn` as the cached connection of `slot` (if it still is).
    async fn forget(&self, slot: &PeerSlot, conn: &Connection) {
        let mut cached = slot.conn.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
        {
            *cached = None;
        }
    }

    /// A new connection to `addr`, checked to be `peer` (ALPN and certificate org) with a
    /// certificate valid for `host`.
    async fn connect(
        &self,
        peer: &OrgId,
        addr: SocketAddr,
        host: &str,
    ) -> Result<(Connection, u64), TransportError> {
        let (client, generation) = {
            let state = self.trust.read().unwrap_or_else(|e| e.into_inner());
            (state.client.clone(), state.generation)
        };
        let server_name = host;
        debug!(peer = %peer, addr = %addr, host, "connecting");
        let connecting = self
            .endpoint
            .connect_with(client, addr, server_name)
            .map_err(|e| match e {
                ConnectError::EndpointStopping => TransportError::Closed,
                ConnectError::InvalidServerName(_)
                | ConnectError::NoDefaultClientConfig
                | ConnectError::UnsupportedVersion => {
                    TransportError::config(format!("cannot connect to {addr}: {e}"))
                }
                other => TransportError::Connect {
                    addr,
                    cause: other.to_string(),
                },
            })?;
        let timeout = self.cfg.connect_timeout;
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                return Err(TransportError::Timeout {
                    addr,
                    during: "connecting to",
                    after: Some(timeout),
                })
            }
            Ok(Err(e)) => return Err(from_connection_error(e, addr, Phase::Connect)),
            Ok(Ok(conn)) => conn,
        };
        if !alpn_ok(&conn) {
            conn.close(codes::BAD_ALPN, b"ALPN tsunagi/1 required");
            return Err(TransportError::Tls {
                addr,
                refused_by: RefusedBy::Us,
                alert: None,
                reason: "the server did not negotiate ALPN tsunagi/1".to_owned(),
            });
        }
        match peer_org(&conn) {
            Ok(found) if found == *peer => {}
            found => {
                let found = match found {
                    Ok(org) => org.to_string(),
                    Err(detail) => format!("no usable org ({detail})"),
                };
                warn!(expected = %peer, found = %found, addr = %addr, "server certificate names another org");
                conn.close(codes::PEER_MISMATCH, b"unexpected peer org");
                return Err(TransportError::PeerMismatch {
                    addr,
                    expected: peer.clone(),
                    found,
                });
            }
        }
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        info!(peer = %peer, addr = %addr, "connected");
        Ok((conn, generation))
    }

    /// One request/reply exchange on a new stream of `conn`.
    async fn exchange(
        &self,
        conn: &Connection,
        addr: SocketAddr,
        message: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let (send, mut recv) = conn.open_bi().await.map_err(Failure::Lost)?;
        let mut send = ResetOnDrop::new(send);
        match send.stream.write_all(message).await {
            Ok(()) => {
                // Only fails if the stream is already closed; the reply read below tells why.
                let _ = send.finish();
            }
            Err(WriteError::Stopped(code)) => {
                // The receiver stopped reading (e.g. over its size limit); it still replies.
                debug!(addr = %addr, reason = codes::stream_name(code), "peer stopped reading; reading its reply");
            }
            Err(WriteError::ConnectionLost(e)) => return Err(Failure::Lost(e)),
            Err(e) => {
                return Err(Failure::Other(TransportError::Stream {
                    addr,
                    cause: format!("cannot send the message: {e}"),
                }))
            }
        }
        match recv.read_to_end(self.cfg.max_message_bytes).await {
            Ok(reply) => Ok(reply),
            Err(ReadToEndError::TooLong) => {
                let _ = recv.stop(codes::TOO_LARGE);
                Err(Failure::Other(TransportError::TooLarge {
                    addr,
                    limit: self.cfg.max_message_bytes,
                }))
            }
            Err(ReadToEndError::Read(ReadError::ConnectionLost(e))) => Err(Failure::Lost(e)),
            Err(ReadToEndError::Read(ReadError::Reset(code))) => {
                Err(Failure::Other(TransportError::Stream {
                    addr,
                    cause: format!("no reply: {}", error::stream_code_message(code)),
                }))
            }
            Err(ReadToEndError::Read(e)) => Err(Failure::Other(TransportError::Stream {
                addr,
                cause: format!("cannot read the reply: {e}"),
            })),
        }
    }

    /// Re-verifies a live incoming connection's client certificate against the current trust;
    /// closes it (and returns false) if it is no longer accepted.
    fn recheck_incoming(&self, peer: &OrgId, conn: &Connection) -> bool {
        let verifier = self
            .trust
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .client_verifier
            .clone();
        let verdict = peer_certs(conn).and_then(|certs| {
            let (leaf, intermediates) = certs
                .split_first()
                .ok_or_else(|| "empty certificate chain".to_owned())?;
            verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match verdict {
            Ok(()) => true,
            Err(reason) => {
                info!(peer = %peer, addr = %conn.remote_address(), reason = %reason, "closing connection: certificate no longer trusted");
                conn.close(
                    codes::CERT_REFUSED,
                    format!("certificate no longer trusted: {reason}").as_bytes(),
                );
                false
            }
        }
    }

    /// Serves the streams a server opens on our outgoing connection `conn` to `peer` with the
    /// handler of [`Transport::serve`], looked up per stream (a connection made before the
    /// handler was installed still answers once it is; while none is, streams are refused).
    ///
    /// It stops when the connection leaves the cache (`back.retired`): a connection replaced,
    /// forgotten or dropped by a trust reload is not kept open by this task. It also stops, and
    /// refuses the stream, when the trust was reloaded since the connection was verified: a
    /// server whose certificate the new trust refuses (e.g. newly revoked) gets nothing more
    /// answered on a connection made before.
    fn serve_back(self: Arc<Self>, peer: OrgId, conn: Connection, mut back: ServeBack) {
        tokio::spawn(async move {
            let remote = conn.remote_address();
            loop {
                let (mut send, mut recv) = tokio::select! {
                    accepted = conn.accept_bi() => match accepted {
                        Ok(streams) => streams,
                        Err(_) => break,
                    },
                    _ = back.retired.changed() => break,
                };
                let handler = self
                    .handler
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let current = back.generation == self.generation();
                let Some(handler) = handler.filter(|_| current) else {
                    let _ = send.reset(codes::ABANDONED);
                    let _ = recv.stop(codes::ABANDONED);
                    if current {
                        continue;
                    }
                    debug!(peer = %peer, addr = %remote, "trust reloaded: no longer serving streams on an older outgoing connection");
                    break;
                };
                let inner = self.clone();
                let peer = peer.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    inner
                        .serve_stream(peer, remote, conn, send, recv, handler)
                        .await
                });
            }
        });
    }

    async fn serve_connection(
        self: Arc<Self>,
        incoming: quinn::Incoming,
        handler: Arc<Handler>,
        handshake: admission::Slot,
    ) {
        let remote = incoming.remote_address();
        let handshake_done = tokio::time::timeout(self.cfg.connect_timeout, incoming).await;
        drop(handshake);
        let Ok(handshake_done) = handshake_done else {
            debug!(addr = %remote, "incoming handshake not done within the connect timeout; dropped");
            return;
        };
        let conn = match handshake_done {
            Ok(conn) => conn,
            Err(e) => {
                let e = from_connection_error(e, remote, Phase::Connect);
                match e {
                    TransportError::Tls { .. } => {
                        info!(addr = %remote, reason = %e, "incoming handshake refused")
                    }
                    _ => debug!(addr = %remote, reason = %e, "incoming handshake failed"),
                }
                return;
            }
        };
        if !alpn_ok(&conn) {
            info!(addr = %remote, "closing connection: no ALPN tsunagi/1");
            conn.close(codes::BAD_ALPN, b"ALPN tsunagi/1 required");
            return;
        }
        let peer = match peer_org(&conn) {
            Ok(peer) => peer,
            Err(detail) => {
                info!(addr = %remote, reason = %detail, "closing connection: no org in the client certificate");
                conn.close(
                    codes::NO_IDENTITY,
                    format!("no tsunagi org in your certificate: {detail}").as_bytes(),
                );
                return;
            }
        };
        let id = conn.stable_id();
        {
            let mut incoming = lock(&self.incoming);
            let open = incoming.values().filter(|(p, _)| *p == peer).count();
            if open >= self.cfg.per_peer_connections {
                drop(incoming);
                warn!(peer = %peer, addr = %remote, open, "closing connection: too many connections from this org");
                conn.close(
                    codes::TOO_MANY_CONNECTIONS,
                    format!("{open} connections from {peer} are open already; use one").as_bytes(),
                );
                return;
            }
            incoming.insert(id, (peer.clone(), conn.clone()));
        }
        // A reload may have raced the handshake: check against the trust in force now.
        if self.recheck_incoming(&peer, &conn) {
            info!(peer = %peer, addr = %remote, "accepted connection");
            loop {
                match conn.accept_bi().await {
                    Ok((send, recv)) => {
                        let inner = self.clone();
                        let handler = handler.clone();
                        let peer = peer.clone();
                        let conn = conn.clone();
                        tokio::spawn(async move {
                            inner
                                .serve_stream(peer, remote, conn, send, recv, handler)
                                .await
                        });
                    }
                    Err(e) => {
                        debug!(peer = %peer, addr = %remote, reason = %e, "connection ended");
                        break;
                    }
                }
            }
        }
        lock(&self.incoming).remove(&id);
    }

    async fn serve_stream(
        self: Arc<Self>,
        peer: OrgId,
        remote: SocketAddr,
        conn: Connection,
        send: SendStream,
        mut recv: RecvStream,
        handler: Arc<Handler>,
    ) {
        let mut send = ResetOnDrop::new(send);
        let max = self.cfg.max_message_bytes;
        let inbound = match read_limited(&mut recv, max).await {
            Ok(Limited::Complete(bytes)) => {
                debug!(peer = %peer, addr = %remote, len = bytes.len(), "message received");
                InboundMessage::Message {
                    peer: peer.clone(),
                    bytes,
                }
            }
            Ok(Limited::Over(len_at_least)) => {
                let _ = recv.stop(codes::TOO_LARGE);
                info!(peer = %peer, addr = %remote, len_at_least, max, "message over the size limit");
                InboundMessage::TooLarge {
                    peer: peer.clone(),
                    max,
                    len_at_least,
                }
            }
            Err(e) => {
                debug!(peer = %peer, addr = %remote, reason = %e, "stream ended before the message was complete");
                return;
            }
        };
        // If the handler panics, unwinding drops `send`, which resets the stream with this code.
        send.code = codes::HANDLER_FAILED;
        let reply = CURRENT.scope(conn, handler(inbound)).await;
        send.code = codes::ABANDONED;
        match send.stream.write_all(&reply).await {
            Ok(()) => {
                let _ = send.finish();
                debug!(peer = %peer, addr = %remote, len = reply.len(), "reply sent");
            }
            Err(e) => {
                debug!(peer = %peer, addr = %remote, reason = %e, "could not send the reply")
            }
        }
    }
}

/// A message read up to a limit.
enum Limited {
    Complete(Vec<u8>),
    /// Over the limit: this many bytes had arrived.
    Over(usize),
}

async fn read_limited(recv: &mut RecvStream, max: usize) -> Result<Limited, ReadError> {
    let mut buf = Vec::new();
    while let Some(chunk) = recv.read_chunk(64 * 1024, true).await? {
        let len = buf.len() + chunk.bytes.len();
        if len > max {
            return Ok(Limited::Over(len));
        }
        buf.extend_from_slice(&chunk.bytes);
    }
    Ok(Limited::Complete(buf))
}

/// A send stream that is reset (not finished) if dropped before [`ResetOnDrop::finish`]:
/// quinn finishes a dropped stream, which would hand the peer a truncated message or an empty
/// reply when a task is cancelled or a handler panics.
struct ResetOnDrop {
    stream: SendStream,
    code: VarInt,
    done: bool,
}

impl ResetOnDrop {
    fn new(stream: SendStream) -> Self {
        ResetOnDrop {
            stream,
            code: codes::ABANDONED,
            done: false,
        }
    }

    fn finish(&mut self) -> Result<(), ClosedStream> {
        self.done = true;
        self.stream.finish()
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.stream.reset(self.code);
        }
    }
}
