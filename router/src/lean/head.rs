//! Message heads on the lean path, parsed in place with `httparse` and
//! rewritten straight into the bytes to send, with the same rules as the
//! general path (`headers`): hop-by-hop headers and those `Connection` names
//! are dropped both ways, `X-Forwarded-*` and the hop count are set, Host and
//! everything else pass byte for byte.
//!
//! A request is taken here only if it is plain: HTTP/1.1, GET/HEAD/OPTIONS,
//! origin-form target, one Host, no body, no upgrade, no `Expect`, under the
//! hop limit. Anything else is [`Parsed::General`]: the connection goes to the
//! general path, which answers it (400, 431, 508, upgrades, bodies, h2c).

use crate::answers::Format;
use crate::headers::{Forwarded, HOP_BY_HOP, MAX_HOPS, SET_BY_ROUTER};
use crate::lean::framing::{Chunked, Framing};

/// Header slots per request; more go to the general path (which allows 100).
pub const MAX_HEADERS: usize = 64;
/// Header slots per response: as many as the general path's client allows.
const MAX_RESPONSE_HEADERS: usize = 100;
/// `Connection` headers (not tokens) a message may carry here; a request with
/// more goes to the general path.
const MAX_CONNECTION: usize = 4;

/// Whether `name` is hop-by-hop (`Upgrade` included: upgrades are never
/// served here), dropped from every message.
fn hop_by_hop(name: &str) -> bool {
    name.eq_ignore_ascii_case("upgrade") || HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// What a client's buffered bytes hold.
#[allow(clippy::large_enum_variant)] // on the stack for one request, never stored
pub enum Parsed<'h, 'b> {
    /// Not a whole head yet.
    Partial,
    /// A plain request this path proxies.
    Lean(Request<'h, 'b>),
    /// Anything else: for the general path.
    General,
}

/// A plain request, borrowing the client's buffer.
pub struct Request<'h, 'b> {
    /// Bytes of the head (the request ends there: it has no body).
    pub len: usize,
    pub host: &'b str,
    /// `Origin` and `Referer`, which choose the instance on an original port.
    pub origin: Option<&'b str>,
    pub referer: Option<&'b str>,
    /// A HEAD request: its response has no body.
    pub is_head: bool,
    /// The client said `Connection: close`.
    pub close: bool,
    /// How to write the router's own answer to it.
    pub format: Format,
    method: &'b str,
    path: &'b str,
    hops: u32,
    xff: Option<&'b [u8]>,
    named: Named<'b>,
    headers: &'h [httparse::Header<'b>],
}

/// The headers `Connection` names (beyond `close` and `keep-alive`), kept as
/// the raw values that name them: most messages name none.
#[derive(Default)]
struct Named<'b> {
    values: [&'b [u8]; MAX_CONNECTION],
    n: usize,
}

/// The tokens of a comma-separated header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

impl<'b> Named<'b> {
    /// Whether a `Connection` header names `name` (`host` never counts: it
    /// is put back on the general path, and kept here).
    fn contains(&self, name: &str) -> bool {
        self.n > 0
            && !name.eq_ignore_ascii_case("host")
            && self.values[..self.n].iter().any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }

    /// Notes a `Connection` value; returns whether it says `close`, or
    /// `None` when it names headers and too many such values came already.
    fn note(&mut self, value: &'b [u8]) -> Option<bool> {
        let (mut close, mut names) = (false, false);
        for t in tokens(value) {
            let is_close = t.eq_ignore_ascii_case(b"close");
            close |= is_close;
            names |= !is_close && !t.eq_ignore_ascii_case(b"keep-alive");
        }
        if names {
            *self.values.get_mut(self.n)? = value;
            self.n += 1;
        }
        Some(close)
    }
}

/// Parses the head at the front of `buf`.
pub fn request<'h, 'b>(buf: &'b [u8], slots: &'h mut [httparse::Header<'b>]) -> Parsed<'h, 'b> {
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::General,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else { return Parsed::General };
    if !matches!(method, "GET" | "HEAD" | "OPTIONS") || !path.starts_with('/') {
        return Parsed::General;
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    match plain(headers) {
        Some(p) if p.hops < MAX_HOPS => Parsed::Lean(Request {
            len,
            host: p.host,
            origin: p.origin,
            referer: p.referer,
            is_head: method == "HEAD",
            close: p.close,
            format: p.format,
            method,
            path,
            hops: p.hops,
            xff: p.xff,
            named: p.named,
            headers,
        }),
        _ => Parsed::General,
    }
}

/// What the headers of a plain request say.
struct Plain<'b> {
    host: &'b str,
    origin: Option<&'b str>,
    referer: Option<&'b str>,
    close: bool,
    hops: u32,
    xff: Option<&'b [u8]>,
    named: Named<'b>,
    format: Format,
}

/// The headers' facts, or `None` if the request is not plain.
fn plain<'b>(headers: &[httparse::Header<'b>]) -> Option<Plain<'b>> {
    let mut p = Plain {
        host: "",
        origin: None,
        referer: None,
        close: false,
        hops: 0,
        xff: None,
        named: Named::default(),
        format: Format::Text,
    };
    let (mut hosts, mut hops_seen, mut xff_seen) = (0, false, false);
    for h in headers {
        let (name, value) = (h.name, h.value);
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            p.host = std::str::from_utf8(value).ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            p.close |= p.named.note(value)?;
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.trim_ascii() != b"0" {
                return None;
            }
        } else if ["transfer-encoding", "upgrade", "expect"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            return None;
        } else if name.eq_ignore_ascii_case("x-agentfs-hops") {
            // The first one counts, as on the general path.
            if !std::mem::replace(&mut hops_seen, true) {
                p.hops = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if !std::mem::replace(&mut xff_seen, true) {
                p.xff = Some(value.trim_ascii()).filter(|v| !v.is_empty());
            }
        } else if name.eq_ignore_ascii_case("accept") {
            p.format = p.format.and_accept(value);
        } else if name.eq_ignore_ascii_case("origin") {
            p.origin = std::str::from_utf8(value).ok();
        } else if name.eq_ignore_ascii_case("referer") {
            p.referer = std::str::from_utf8(value).ok();
        }
    }
    if p.named.contains("x-forwarded-for") {
        p.xff = None; // stripped before the router adds its own, as on the general path
    }
    (hosts == 1).then_some(p)
}

impl Request<'_, '_> {
    /// Writes the head to send to the app into `out`.
    pub fn write_upstream(&self, fwd: &Forwarded, out: &mut Vec<u8>) {
        for part in [self.method.as_bytes(), b" ", self.path.as_bytes(), b" HTTP/1.1\r\n"] {
            out.extend_from_slice(part);
        }
        for h in self.headers {
            let ours = SET_BY_ROUTER.iter().any(|n| h.name.eq_ignore_ascii_case(n));
            if !ours && !hop_by_hop(h.name) && !self.named.contains(h.name) {
                put_header(out, h.name.as_bytes(), h.value);
            }
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = self.xff {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(fwd.ip());
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(fwd.proto());
        out.extend_from_slice(b"\r\n");
        put_header(out, b"x-forwarded-host", self.host.as_bytes());
        put_header(out, b"x-forwarded-port", fwd.port());
        out.extend_from_slice(b"x-agentfs-hops: ");
        out.extend_from_slice(itoa(self.hops + 1, &mut [0; 10]));
        out.extend_from_slice(b"\r\n\r\n");
    }
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for part in [name, b": ", value, b"\r\n"] {
        out.extend_from_slice(part);
    }
}

fn itoa(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// An app's response head, once whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Bytes of the head.
    pub len: usize,
    /// A 1xx the client is not sent (as on the general path): read the next head.
    pub informational: bool,
    pub framing: Framing,
    /// The app keeps the connection open for another request.
    pub app_keeps: bool,
    /// The client connection must close after this response.
    pub close: bool,
}

/// Parses the app's response head at the front of `buf` to a request that
/// was `HEAD` or not, writing the head for the client into `out`
/// (`Connection: close` added when `close` or when the body runs to EOF).
/// `Ok(None)`: not whole yet. `Err`: not a response this router passes on.
pub fn response(buf: &[u8], is_head: bool, close: bool, out: &mut Vec<u8>) -> Result<Option<Response>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(version), Some(code)) = (res.version, res.code) else { return Err("malformed response head") };
    match code {
        101 => return Err("the app switched protocols without being asked"),
        100..=199 => {
            let framing = Framing::Empty;
            return Ok(Some(Response { len, informational: true, framing, app_keeps: true, close }));
        }
        _ => {}
    }
    let facts = response_facts(res.headers)?;
    let framing = match facts.framing {
        _ if is_head || code == 204 || code == 304 => Framing::Empty,
        Some(f) => f,
        None => Framing::UntilClose,
    };
    let close = close || framing == Framing::UntilClose;
    let app_keeps = version == 1 && !facts.close && framing != Framing::UntilClose;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(u32::from(code), &mut [0; 10]));
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        // A transfer-coded body passes as it came, so its coding is named;
        // a Content-Length beside it would lie.
        let keep_te = facts.coded && h.name.eq_ignore_ascii_case("transfer-encoding");
        let hop = hop_by_hop(h.name) && !keep_te;
        let length_too = facts.coded && h.name.eq_ignore_ascii_case("content-length");
        if !hop && !length_too && !facts.named.contains(h.name) {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    if !facts.dated {
        crate::lean::date::put(out);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Response { len, informational: false, framing, app_keeps, close }))
}

/// What a response's headers say about its framing and connection.
struct ResponseFacts<'b> {
    framing: Option<Framing>,
    /// Transfer-coded; `chunked` if the final coding is chunked.
    coded: bool,
    /// Has a `Date`.
    dated: bool,
    chunked: bool,
    close: bool,
    named: Named<'b>,
}

fn response_facts<'b>(headers: &[httparse::Header<'b>]) -> Result<ResponseFacts<'b>, &'static str> {
    let mut f = ResponseFacts {
        framing: None,
        coded: false,
        dated: false,
        chunked: false,
        close: false,
        named: Named::default(),
    };
    let mut length: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            // `5, 5` is one length said twice (RFC 9110 §8.6).
            for v in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let n = std::str::from_utf8(v)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or("bad content-length")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting content-length");
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            f.coded = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
            f.chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            f.close |= f.named.note(h.value).ok_or("too many Connection headers")?;
        } else if h.name.eq_ignore_ascii_case("date") {
            f.dated = true;
        }
    }
    f.framing = match (f.coded, f.chunked, length) {
        (true, true, _) => Some(Framing::Chunked(Chunked::default())),
        (true, false, _) => None,
        (false, _, Some(n)) => Some(Framing::Length(n)),
        (false, _, None) => None,
    };
    Ok(f)
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
