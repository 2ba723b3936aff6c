//! The one response body type of the HTTP side: an app's streamed body, or a
//! small one the router wrote itself (or writes as it goes: an event stream). An app's body carries the connection it
//! came on, and hands it back to the pool the moment the body has been read
//! to its end — with no task per request in the common case. A body sent to
//! a client also carries the request's [`Busy`] mark, so the connection
//! counts as idle again (see `limits`) only once the response has gone out.
//!
//! A request body going to an app is a [`RequestBody`]: the client's body,
//! passed through, remembering whether the client's side of it broke (bad
//! chunking), so that failure is answered 400 and not blamed on the app.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::limits::Busy;
use crate::pool::{self, Sender, Upstream};

pin_project_lite::pin_project! {
    /// A response body: streamed from an app, or the router's own.
    pub struct Body {
        #[pin]
        inner: Either<AppBody, Either<Full<Bytes>, Channel>>,
        busy: Option<Busy>,
    }
}

/// A body the router wrote.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body { inner: Either::Right(Either::Left(Full::new(bytes.into()))), busy: None }
}

/// A body the router writes as it goes (the dashboard's event stream): it
/// ends when the sender is dropped.
pub fn channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    Body { inner: Either::Right(Either::Right(Channel { rx })), busy: None }
}

/// Chunks from a channel, each one data frame.
pub struct Channel {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl HttpBody for Channel {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// An app's body, passed through frame by frame; `conn` (if any) goes back
/// to `upstream`'s pool once the body has ended.
pub fn stream(inner: Incoming, conn: Option<(Arc<Upstream>, Sender)>) -> Body {
    Body { inner: Either::Left(AppBody { inner, conn }), busy: None }
}

impl Body {
    /// Keeps `busy` until the body is dropped (sent, or abandoned).
    pub fn holding(mut self, busy: Busy) -> Body {
        self.busy = Some(busy);
        self
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// An app's response body and the connection to return after it.
    pub struct AppBody {
        #[pin]
        inner: Incoming,
        conn: Option<(Arc<Upstream>, Sender)>,
    }

    impl PinnedDrop for AppBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.inner.is_end_stream() {
                give_back(this.conn);
            }
        }
    }
}

fn give_back(conn: &mut Option<(Arc<Upstream>, Sender)>) {
    if let Some((up, tx)) = conn.take() {
        pool::recycle(up, tx);
    }
}

impl HttpBody for AppBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None) => give_back(this.conn),
            Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => give_back(this.conn),
            Poll::Ready(Some(Err(_))) => drop(this.conn.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client's request body on its way to an app.
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        broken: Arc<AtomicBool>,
    }
}

impl RequestBody {
    /// Wraps `inner`; [`ClientFault::happened`] tells later whether reading it failed.
    pub fn new(inner: Incoming) -> (RequestBody, ClientFault) {
        let broken = Arc::new(AtomicBool::new(false));
        (RequestBody { inner, broken: broken.clone() }, ClientFault(broken))
    }
}

/// Whether the client's request body could not be read (malformed framing,
/// or the client went away mid-body).
#[derive(Clone, Debug)]
pub struct ClientFault(Arc<AtomicBool>);

impl ClientFault {
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.broken.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
