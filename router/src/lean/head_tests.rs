use super::*;

fn fwd() -> Forwarded {
    Forwarded::new("[::ffff:127.0.0.1]:5000".parse().unwrap(), None, 7355)
}

/// The upstream head for `raw`, or why it is not lean.
fn rewrite(raw: &str) -> Result<(String, usize, bool, bool), &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match request(raw.as_bytes(), &mut slots) {
        Parsed::Partial => Err("partial"),
        Parsed::General => Err("general"),
        Parsed::Lean(r) => {
            let mut out = Vec::new();
            r.write_upstream(&fwd(), &mut out);
            Ok((String::from_utf8(out).unwrap(), r.len, r.close, r.is_head))
        }
    }
}

#[test]
fn a_plain_request_is_rewritten_like_the_general_path_does() {
    let raw = "GET /p?q=1 HTTP/1.1\r\nHost: shop.localhost:7355\r\nConnection: keep-alive, X-Private\r\n\
               X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\
               X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil\r\nx-agentfs-hops: 2\r\nOrigin: http://a\r\n\r\nNEXT";
    let (head, len, close, is_head) = rewrite(raw).unwrap();
    assert_eq!(len, raw.len() - 4, "the head ends before the next request");
    assert!(!close && !is_head);
    assert_eq!(
        head,
        "GET /p?q=1 HTTP/1.1\r\nHost: shop.localhost:7355\r\nOrigin: http://a\r\n\
         x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: shop.localhost:7355\r\n\
         x-forwarded-port: 7355\r\nx-agentfs-hops: 3\r\n\r\n"
    );
    let (head, _, close, is_head) =
        rewrite("HEAD / HTTP/1.1\r\nhost: a.localhost\r\nconnection: close\r\n\r\n").unwrap();
    assert!(close && is_head);
    assert!(head.ends_with("x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.localhost\r\nx-forwarded-port: 7355\r\nx-agentfs-hops: 1\r\n\r\n"), "{head}");
    assert!(rewrite("OPTIONS /x HTTP/1.1\r\nhost: a.localhost\r\ncontent-length: 0\r\n\r\n").is_ok());
}

#[test]
fn edge_cases_match_the_general_path() {
    let (head, ..) =
        rewrite("GET / HTTP/1.1\r\nhost: a.localhost\r\nconnection: host, x-a, close\r\nx-a: 1\r\n\r\n").unwrap();
    assert!(
        head.starts_with("GET / HTTP/1.1\r\nhost: a.localhost\r\nx-forwarded-for"),
        "Host is never dropped: {head}"
    );
    let (head, ..) =
        rewrite("GET / HTTP/1.1\r\nhost: a.localhost\r\nx-agentfs-hops: 1\r\nx-agentfs-hops: 9\r\n\r\n").unwrap();
    assert!(head.contains("x-agentfs-hops: 2\r\n"), "the first hop count counts: {head}");
    assert_eq!(
        rewrite("GET / HTTP/1.1\r\nhost: a.localhost\r\nx-agentfs-hops: 9\r\nx-agentfs-hops: 0\r\n\r\n").err(),
        Some("general")
    );
    let xff = |extra: &str| {
        let (head, ..) = rewrite(&format!("GET / HTTP/1.1\r\nhost: a.localhost\r\n{extra}\r\n")).unwrap();
        head.lines().find(|l| l.starts_with("x-forwarded-for")).unwrap().to_owned()
    };
    assert_eq!(xff("x-forwarded-for: \r\nx-forwarded-for: 10.0.0.9\r\n"), "x-forwarded-for: 127.0.0.1");
    assert_eq!(xff("x-forwarded-for: 10.0.0.9\r\nconnection: x-forwarded-for\r\n"), "x-forwarded-for: 127.0.0.1");
    assert_eq!(
        xff("x-forwarded-for: 10.0.0.9\r\nx-forwarded-for: 10.0.0.8\r\n"),
        "x-forwarded-for: 10.0.0.9, 127.0.0.1"
    );
}

#[test]
fn anything_unusual_goes_to_the_general_path() {
    let many: String = (0..70).map(|i| format!("x-{i}: 1\r\n")).collect();
    let cases = [
        "POST / HTTP/1.1\r\nhost: a.localhost\r\ncontent-length: 0\r\n\r\n".to_owned(),
        "GET / HTTP/1.0\r\nhost: a.localhost\r\n\r\n".to_owned(),
        "GET http://a.localhost/ HTTP/1.1\r\nhost: a.localhost\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\nhost: b.localhost\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\ncontent-length: 5\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\nexpect: 100-continue\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\nx-agentfs-hops: 5\r\n\r\n".to_owned(),
        "GET / HTTP/1.1\r\nhost: a.localhost\r\nx-agentfs-hops: junk\r\n\r\n".to_owned(),
        format!("GET / HTTP/1.1\r\nhost: a.localhost\r\n{}\r\n", "connection: x-a\r\n".repeat(5)),
        format!("GET / HTTP/1.1\r\nhost: a.localhost\r\n{many}\r\n"),
        "GET / HTTP/1.1\r\nho st: x\r\n\r\n".to_owned(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
    ];
    for raw in cases {
        assert_eq!(rewrite(&raw).err(), Some("general"), "{raw:?}");
    }
    assert_eq!(rewrite("GET / HTTP/1.1\r\nhost: a.loc").err(), Some("partial"));
}

/// The client head for an app's `raw` response head, without the `date`
/// line the router adds to every final response that has none (checked here).
fn respond(raw: &str, is_head: bool, close: bool) -> Result<Option<(Response, String)>, &'static str> {
    let mut out = Vec::new();
    let r = response(raw.as_bytes(), is_head, close, &mut out)?;
    let head = String::from_utf8(out).unwrap();
    let dated: Vec<&str> = head.split_inclusive("\r\n").filter(|l| l.starts_with("date: ")).collect();
    let want = usize::from(r.as_ref().is_some_and(|r| !r.informational));
    assert_eq!(dated.len(), want, "{head}");
    let head = head.split_inclusive("\r\n").filter(|l| !l.starts_with("date: ")).collect();
    Ok(r.map(|r| (r, head)))
}

#[test]
fn a_date_is_added_only_when_missing() {
    let mut out = Vec::new();
    response(
        b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 0\r\n\r\n",
        false,
        false,
        &mut out,
    )
    .unwrap();
    let head = String::from_utf8(out).unwrap();
    assert_eq!(head, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn responses_are_framed_and_stripped() {
    let (r, head) = respond(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, X-App\r\nX-App: 1\r\nKeep-Alive: t=5\r\nX-Y: 2\r\n\r\nok\n",
        false,
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        r,
        Response { len: 104, informational: false, framing: Framing::Length(3), app_keeps: true, close: false }
    );
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Y: 2\r\n\r\n");
    let (r, head) = respond("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n", false, true)
        .unwrap()
        .unwrap();
    assert_eq!(r.framing, Framing::Chunked(Chunked::default()));
    assert!(r.close && r.app_keeps);
    assert_eq!(head, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    let (r, head) = respond("HTTP/1.0 200 OK\r\nx: 1\r\n\r\n", false, false).unwrap().unwrap();
    assert_eq!((r.framing, r.app_keeps, r.close), (Framing::UntilClose, false, true));
    assert_eq!(head, "HTTP/1.1 200 OK\r\nx: 1\r\nconnection: close\r\n\r\n");
    let (r, _) = respond("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", true, false).unwrap().unwrap();
    assert_eq!((r.framing, r.app_keeps), (Framing::Empty, true), "a HEAD response has no body");
    let (r, _) = respond("HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n", false, false).unwrap().unwrap();
    assert_eq!((r.framing, r.app_keeps, r.close), (Framing::Empty, false, false));
    let (r, head) = respond("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", false, false).unwrap().unwrap();
    assert!(r.informational && head.is_empty());
}

#[test]
fn odd_but_valid_responses_pass() {
    let many: String = (0..90).map(|i| format!("x-{i}: 1\r\n")).collect();
    let (r, head) =
        respond(&format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{many}\r\n"), false, false).unwrap().unwrap();
    assert_eq!((r.framing, head.matches("x-").count()), (Framing::Length(0), 90));
    let (r, _) = respond("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", false, false).unwrap().unwrap();
    assert_eq!(r.framing, Framing::Length(5));
    let (r, head) = respond("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 9\r\n\r\n", false, false)
        .unwrap()
        .unwrap();
    assert_eq!(r.framing, Framing::UntilClose);
    assert_eq!(head, "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\n");
    let named = "connection: a, b, c, d, e, f, g, h, i\r\ni: 1\r\nj: 2\r\n";
    let (_, head) = respond(&format!("HTTP/1.1 204 No Content\r\n{named}\r\n"), false, false).unwrap().unwrap();
    assert_eq!(head, "HTTP/1.1 204 No Content\r\nj: 2\r\n\r\n");
}

#[test]
fn bad_responses_are_errors() {
    assert_eq!(respond("HTTP/1.1 200 OK\r\ncontent-le", false, false), Ok(None));
    for bad in [
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        assert!(respond(bad, false, false).is_err(), "{bad:?}");
    }
}
