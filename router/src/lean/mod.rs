//! The lean request path: every client connection starts here. Plain
//! requests — HTTP/1.1 GET, HEAD or OPTIONS without a body or an upgrade, for
//! a host with a live route — are proxied straight from the client's buffer
//! to a pooled app stream and back, bytes in place: the head is parsed once
//! and rewritten as it is copied, the body is passed through as it arrives
//! (chunked stays chunked). That is the traffic of a page load, HMR module
//! fetches and most API polling, and it costs a fraction of a general HTTP
//! stack (no header map, no per-request task or channel, no allocation).
//!
//! The first request that is anything else — a body, an upgrade, h2c, the
//! dashboard, a 404, a starting app, an error to answer — hands the
//! connection, with the bytes read so far, to the general path
//! (`server` + hyper + `proxy`), which serves it to the end.
//!
//! # Layout
//! `head` (parse and rewrite heads, with `head_tests`), `framing` (where a
//! body ends), `date` (a `Date` for responses without one), `rewind` (the
//! hand-off stream).

mod date;
mod framing;
mod head;
mod rewind;

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use rewind::{ClientIo, Rewind};

use crate::answers::{Answer, Format};
use crate::headers::Forwarded;
use crate::host::Host;
use crate::original::{self, OnPort};
use crate::pool::Upstream;
use crate::state::Shared;
use crate::stream::{self, AppStream};
use crate::table::{Lookup, ReplicaSet};
use framing::Framing;
use head::Parsed;

/// How a connection left the lean path.
pub enum Ended<S> {
    /// Closed: by either side, the header timeout, a stop, or an error.
    Closed,
    /// For the general path, from the first byte it has not served; `stopping`:
    /// the router's stop signal has already been taken; `idle_since`: when the
    /// connection last had no request in flight (its header timeout runs on).
    General { stream: Rewind<S>, stopping: bool, idle_since: Instant },
}

/// Room made for each read.
const READ_CHUNK: usize = 16 * 1024;
/// Largest app response head passed on (as on the general path).
const MAX_RESPONSE_HEAD: usize = 1024 * 1024;
/// A partial head up to this size is parsed again on every read (so garbage
/// is refused at once); a longer one only once its end may have arrived.
const SMALL_HEAD: usize = 1024;

/// One client connection on the lean path.
struct Conn<'a, S> {
    shared: &'a Shared,
    forwarded: &'a Forwarded,
    /// The router's stop signal for this connection; polled only while
    /// `stopping` is false.
    stop: &'a mut oneshot::Receiver<()>,
    client: S,
    /// Bytes from the client not yet served.
    input: BytesMut,
    /// The head sent to the app.
    req_head: Vec<u8>,
    /// The head (and first body bytes) sent to the client.
    res_head: Vec<u8>,
    /// Bytes from the app.
    res: BytesMut,
    /// When the connection last had no request in flight.
    idle_since: Instant,
    /// Bytes at the front of `input` known not to hold a whole head.
    scanned: usize,
    stopping: bool,
    /// The app port this connection came in on, if not the router's (see `original`).
    original: Option<u16>,
}

/// A request to proxy, its head already rewritten into `req_head`.
struct Plan {
    len: usize,
    is_head: bool,
    close: bool,
    format: Format,
    set: Arc<ReplicaSet>,
}

enum Next {
    Read,
    Serve(Plan),
    General,
}

enum Served {
    KeepOn,
    Close,
    General,
}

/// Serves `client`, accepted at `accepted`, until it closes or needs the
/// general path.
pub async fn serve<S: ClientIo>(
    client: S,
    accepted: Instant,
    shared: &Shared,
    forwarded: &Forwarded,
    stop: &mut oneshot::Receiver<()>,
    original: Option<u16>,
) -> Ended<S> {
    let limits = &shared.config.limits;
    let mut c = Conn {
        shared,
        forwarded,
        stop,
        client,
        input: BytesMut::with_capacity(4096),
        req_head: Vec::new(),
        res_head: Vec::new(),
        res: BytesMut::new(),
        idle_since: accepted,
        scanned: 0,
        stopping: false,
        original,
    };
    // One timer for the connection's life, pushed back only when it fires.
    let sleep = tokio::time::sleep_until(accepted + limits.header_read_timeout);
    tokio::pin!(sleep);
    loop {
        let plan = match c.next() {
            Next::Serve(plan) => plan,
            Next::General => return c.general(),
            Next::Read if c.input.len() >= limits.max_header_bytes => return c.general(),
            // Stopping and idle, unless a request is already on its way in.
            Next::Read if c.input.is_empty() && c.stopping && !stream::has_unread(c.client.tcp()) => {
                return Ended::Closed;
            }
            Next::Read => {
                if c.input.capacity() - c.input.len() < 1024 {
                    c.input.reserve(4096);
                }
                c.scanned = c.input.len();
                tokio::select! {
                    biased;
                    r = c.client.read_buf(&mut c.input) => if !matches!(r, Ok(n) if n > 0) {
                        return Ended::Closed;
                    },
                    _ = &mut *c.stop, if !c.stopping => c.stopping = true,
                    () = &mut sleep => {
                        let deadline = c.idle_since + limits.header_read_timeout;
                        if Instant::now() >= deadline {
                            tracing::debug!("closed: no request head within the header timeout");
                            return Ended::Closed;
                        }
                        sleep.as_mut().reset(deadline);
                    }
                }
                continue;
            }
        };
        match c.proxy(plan).await {
            Served::KeepOn => c.idle_since = Instant::now(),
            Served::Close => return Ended::Closed,
            Served::General => return c.general(),
        }
    }
}

impl<S: ClientIo> Conn<'_, S> {
    /// What to do with the bytes read so far.
    fn next(&mut self) -> Next {
        // A long head trickling in is parsed again only once its end may be there.
        let fresh = &self.input[self.scanned.saturating_sub(3)..];
        let ended = fresh.windows(2).any(|w| w == b"\n\n") || fresh.windows(3).any(|w| w == b"\n\r\n");
        if !ended && self.scanned > 0 && self.input.len() > SMALL_HEAD {
            return Next::Read;
        }
        let mut slots = [httparse::EMPTY_HEADER; head::MAX_HEADERS];
        let req = match head::request(&self.input, &mut slots) {
            Parsed::Partial => return Next::Read,
            Parsed::General => return Next::General,
            Parsed::Lean(req) => req,
        };
        let table = self.shared.table();
        let set = match self.original {
            None => match Host::parse(req.host).map(|h| table.resolve(&h)) {
                Ok(Lookup::Route(set)) => set.clone(),
                _ => return Next::General,
            },
            Some(port) => match original::resolve(&table, port, req.host, req.origin, req.referer) {
                OnPort::Route(set) => set.clone(),
                _ => return Next::General,
            },
        };
        self.req_head.clear();
        req.write_upstream(self.forwarded, &mut self.req_head);
        let close = req.close || self.stopping;
        Next::Serve(Plan { len: req.len, is_head: req.is_head, close, format: req.format, set })
    }

    fn general(self) -> Ended<S> {
        tracing::debug!("to the general path");
        let stream = Rewind::new(self.input.freeze(), self.client);
        Ended::General { stream, stopping: self.stopping, idle_since: self.idle_since }
    }

    /// Phases 3 and 4 for one request: a stream to the app, the exchange,
    /// the body passed through; the stream back to the pool if it is clean.
    async fn proxy(&mut self, plan: Plan) -> Served {
        // Failover past a dead replica, and its 502, are the general path's.
        let Some(up) = plan.set.candidates().next().filter(|u| !u.is_dead()).cloned() else {
            return Served::General;
        };
        let (mut app, res) = match self.exchange(&up, &plan).await {
            Exchange::Answered(app, res) => (app, res),
            Exchange::General => return Served::General,
            Exchange::ClientGone => return Served::Close,
            Exchange::Failed(why) => return self.bad_gateway(&plan, why).await,
        };
        let mut framing = res.framing;
        let first = &self.res[res.len..];
        let Ok(n) = framing.take(first) else { return self.bad_gateway(&plan, "malformed chunked body").await };
        let mut app_keeps = res.app_keeps && n == first.len();
        if self.original.is_some() {
            name_instance(&mut self.res_head, &plan.set.instance);
        }
        self.res_head.extend_from_slice(&first[..n]);
        self.input.advance(plan.len);
        self.scanned = 0;
        if send(&mut self.client, &self.res_head).await.is_err() {
            return Served::Close;
        }
        while !framing.is_done() {
            self.res.clear();
            self.res.reserve(READ_CHUNK);
            let watch = self.input.is_empty(); // see `gone`
            let read = tokio::select! {
                r = app.read_buf(&mut self.res) => r,
                () = gone(self.client.tcp()), if watch => return Served::Close,
            };
            match read {
                Ok(0) if framing == Framing::UntilClose => break,
                Ok(0) | Err(_) => return Served::Close, // cut short: the client must see it end
                Ok(_) => {}
            }
            let Ok(n) = framing.take(&self.res) else { return Served::Close };
            app_keeps &= n == self.res.len();
            if send(&mut self.client, &self.res[..n]).await.is_err() {
                return Served::Close;
            }
        }
        if app_keeps {
            up.checkin_stream(app);
        }
        if res.close { Served::Close } else { Served::KeepOn }
    }

    /// Sends `req_head` on a pooled stream, or a fresh one if the pooled one
    /// turns out closed before answering, and reads the response head.
    async fn exchange(&mut self, up: &Upstream, plan: &Plan) -> Exchange {
        let mut pooled = up.pop_stream();
        loop {
            let fresh = pooled.is_none();
            let mut app = match pooled.take() {
                Some(app) => app,
                None => match up.connect_stream().await {
                    Ok(app) => app,
                    Err(_) => return Exchange::General,
                },
            };
            let answer = match app.write_all(&self.req_head).await {
                Ok(()) => self.response_head(&mut app, plan).await,
                Err(_) => Ok(None),
            };
            match answer {
                Ok(Some(res)) => return Exchange::Answered(app, res),
                // Sent, so not sent again (the general path would): a 502.
                Ok(None) if fresh => return Exchange::Failed("the app closed the connection without answering"),
                Ok(None) => {} // a stale pooled stream: once more on a new one
                Err(Failure::ClientGone) => return Exchange::ClientGone,
                Err(Failure::App(why)) => return Exchange::Failed(why),
            }
        }
    }

    /// Reads the app's response head into `res` (and its client form into
    /// `res_head`); `None`: the app closed before sending a byte. A client
    /// that goes away meanwhile ends the wait (an abandoned long poll must
    /// not hold the app's connection).
    async fn response_head(&mut self, app: &mut AppStream, plan: &Plan) -> Result<Option<head::Response>, Failure> {
        self.res.clear();
        let mut got_any = false;
        let watch = self.input.len() == plan.len; // see `gone`
        loop {
            self.res_head.clear();
            let close = plan.close || self.stop_taken();
            match head::response(&self.res, plan.is_head, close, &mut self.res_head).map_err(Failure::App)? {
                Some(res) if res.informational => {
                    self.res.advance(res.len);
                    continue;
                }
                Some(res) => return Ok(Some(res)),
                None if self.res.len() >= MAX_RESPONSE_HEAD => return Err(Failure::App("response head too large")),
                None => {}
            }
            self.res.reserve(READ_CHUNK);
            let read = tokio::select! {
                r = app.read_buf(&mut self.res) => r,
                () = gone(self.client.tcp()), if watch => return Err(Failure::ClientGone),
            };
            match read {
                Ok(0) | Err(_) if !got_any => return Ok(None),
                Ok(0) => return Err(Failure::App("the app closed the connection in the middle of its response head")),
                Err(_) => {
                    return Err(Failure::App("the connection to the app failed in the middle of its response head"));
                }
                Ok(_) => got_any = true,
            }
        }
    }

    /// Whether the router is stopping (taking its signal if it just came):
    /// the response in hand then says `connection: close`.
    fn stop_taken(&mut self) -> bool {
        if !self.stopping && !matches!(self.stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            self.stopping = true;
        }
        self.stopping
    }

    /// The router's 502 for an app that answered something it cannot pass on.
    async fn bad_gateway(&mut self, plan: &Plan, why: &str) -> Served {
        let message = format!("{} sent a response the router cannot pass on: {why}", plan.set.what);
        let next = "The app broke HTTP/1.1 framing; its terminal may say why. Other requests are not affected.";
        let dash = self.shared.dashboard_url();
        let answer = Answer::new(StatusCode::BAD_GATEWAY, "bad response from the app", message, &dash).next(next);
        let _ = send(&mut self.client, &answer.to_http1(plan.format)).await;
        Served::Close
    }
}

/// Adds `x-agentfs-instance` to a response head (answers on an original port).
fn name_instance(head: &mut Vec<u8>, instance: &str) {
    if head.ends_with(b"\r\n\r\n") {
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"x-agentfs-instance: ");
        head.extend_from_slice(instance.as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
    }
}

/// The outcome of sending a request to an app.
enum Exchange {
    Answered(AppStream, head::Response),
    /// Not sent: nothing to connect to.
    General,
    ClientGone,
    Failed(&'static str),
}

/// Why no response head came.
enum Failure {
    ClientGone,
    App(&'static str),
}

/// Writes `bytes` to the client, all of them on the wire (TLS buffers
/// records until flushed; for TCP the flush is free): a streamed body
/// (server-sent events) reaches the browser as the app writes it.
async fn send<S: ClientIo>(client: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// Resolves when the client has closed its side (or failed); never if it
/// sends more instead (a pipelined request, read after this response).
/// Raced against the app only while no pipelined bytes are buffered: a
/// client that sent its requests and then shut its side down still gets
/// the answers (as hyper does it).
async fn gone(client: &TcpStream) {
    let mut byte = [0u8; 1];
    if matches!(client.peek(&mut byte).await, Ok(n) if n > 0) {
        std::future::pending::<()>().await;
    }
}
