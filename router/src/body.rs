//! The one response body type of the HTTP side: an app's streamed body, or a
//! small one the router wrote itself.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A response body: streamed from an app, or the router's own.
pub type Body = Either<Incoming, Full<Bytes>>;

/// A body the router wrote.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

/// An app's body, passed through frame by frame.
pub fn stream(b: Incoming) -> Body {
    Either::Left(b)
}
