//! Where an HTTP/1.1 response body ends, without decoding it: the lean path
//! passes an app's body bytes to the client exactly as they came (chunked
//! stays chunked, so server-sent events flow chunk by chunk), and only needs
//! to know when the body is over so the app connection can be reused and the
//! next request read.

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304) or one that has ended.
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body runs until the app closes the connection.
    UntilClose,
}

/// A chunked body that does not follow the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct BadChunk(&'static str);

impl Framing {
    /// How many of `bytes` (the next bytes after what was taken before)
    /// belong to the body; the body is over once [`Framing::is_done`].
    pub fn take(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Length(left) => {
                let n = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked(c) => c.advance(bytes),
            Framing::UntilClose => Ok(bytes.len()),
        }
    }

    /// Whether the whole body has been taken.
    pub fn is_done(&self) -> bool {
        match self {
            Framing::Empty | Framing::Length(0) => true,
            Framing::Chunked(c) => c.state == State::Done,
            _ => false,
        }
    }
}

/// Longest chunk-size line (extensions included) and trailer section allowed.
const MAX_LINE: u32 = 4096;
const MAX_TRAILERS: u32 = 64 * 1024;

/// Position inside a chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In a chunk-size line: the size so far, digits seen, bytes of line.
    Size {
        size: u64,
        digits: u8,
        len: u32,
    },
    /// Past the size digits (extension or whitespace), until LF.
    SizeRest {
        size: u64,
        len: u32,
    },
    /// Inside chunk data.
    Data(u64),
    /// Expecting the CR then LF after chunk data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailers {
        line: u32,
        total: u32,
    },
    Done,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked { state: State::Size { size: 0, digits: 0, len: 0 } }
    }
}

impl Chunked {
    /// Consumes the body's bytes at the front of `bytes`; returns how many.
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data(left) = self.state {
                let n = usize::try_from(left).map_or(bytes.len() - i, |l| l.min(bytes.len() - i));
                i += n;
                let left = left - n as u64;
                self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.state = step(self.state, bytes[i])?;
            i += 1;
        }
        Ok(i)
    }
}

/// One byte of framing (anything but chunk data).
fn step(state: State, b: u8) -> Result<State, BadChunk> {
    let long = |len: u32| if len >= MAX_LINE { Err(BadChunk("chunk-size line too long")) } else { Ok(len + 1) };
    Ok(match state {
        State::Size { size, digits, len } => match (b as char).to_digit(16) {
            Some(d) if digits < 16 => {
                State::Size { size: size << 4 | u64::from(d), digits: digits + 1, len: long(len)? }
            }
            Some(_) => return Err(BadChunk("chunk size too large")),
            None if digits == 0 => return Err(BadChunk("chunk size missing")),
            None => return step(State::SizeRest { size, len }, b),
        },
        State::SizeRest { size, len } => match b {
            b'\n' if size == 0 => State::Trailers { line: 0, total: 0 },
            b'\n' => State::Data(size),
            b'\r' | b' ' | b'\t' | 0x21..=0x7e => State::SizeRest { size, len: long(len)? },
            _ => return Err(BadChunk("bad byte in chunk-size line")),
        },
        State::DataCr if b == b'\r' => State::DataLf,
        State::DataCr | State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0, len: 0 },
        State::DataCr | State::DataLf => return Err(BadChunk("chunk data not followed by CRLF")),
        State::Trailers { total, .. } if total >= MAX_TRAILERS => return Err(BadChunk("trailers too large")),
        State::Trailers { line: 0, .. } if b == b'\n' => State::Done,
        State::Trailers { total, .. } if b == b'\n' => State::Trailers { line: 0, total: total + 1 },
        State::Trailers { line, total } if b == b'\r' => State::Trailers { line, total: total + 1 },
        State::Trailers { line, total } => State::Trailers { line: line + 1, total: total + 1 },
        State::Data(_) | State::Done => state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns (bytes taken, done).
    fn feed(framing: &mut Framing, body: &[u8], step: usize) -> Result<(usize, bool), BadChunk> {
        let mut taken = 0;
        for piece in body.chunks(step) {
            let n = framing.take(piece)?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((taken, framing.is_done()))
    }

    #[test]
    fn chunked_ends_after_the_last_chunk_and_trailers_in_any_split() {
        let body = b"5\r\nhello\r\n1a;name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        for step in 1..body.len() {
            let mut f = Framing::Chunked(Chunked::default());
            assert_eq!(feed(&mut f, body, step), Ok((end, true)), "split every {step}");
        }
        let mut f = Framing::Chunked(Chunked::default());
        assert_eq!(feed(&mut f, b"A\r\n0123456789\r\n0\r\n\r\n", 7), Ok((20, true)));
        let mut f = Framing::Chunked(Chunked::default());
        assert_eq!(feed(&mut f, b"3\r\nab", 64), Ok((5, false)), "a body in flight is not done");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"\r\n"[..], b"zz\r\n", b"3\r\nabcX", b"11111111111111111\r\n", b"3\x01\r\n"] {
            let mut f = Framing::Chunked(Chunked::default());
            assert!(feed(&mut f, bad, 64).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut f = Framing::Chunked(Chunked::default());
        assert!(feed(&mut f, &[b'1'; 5000], 64).is_err(), "an endless size line");
    }

    #[test]
    fn length_and_close() {
        let mut f = Framing::Length(5);
        assert_eq!(f.take(b"abc"), Ok(3));
        assert!(!f.is_done());
        assert_eq!(f.take(b"defgh"), Ok(2));
        assert!(f.is_done());
        let mut f = Framing::UntilClose;
        assert_eq!(f.take(b"abc"), Ok(3));
        assert!(!f.is_done());
        assert!(Framing::Empty.is_done());
        assert_eq!(Framing::Empty.take(b"x"), Ok(0));
    }
}
