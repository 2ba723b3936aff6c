//! Acceptance 11: a malformed request line gets 400, 100 KB of headers 431,
//! a client that sends its headers one byte a second is closed after the
//! header timeout — and meanwhile the router keeps serving others.

mod support;

use std::time::{Duration, Instant};

use support::app::{self, Spec};
use support::http::{raw, tag};
use support::{Env, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_huge_requests_get_4xx() {
    let env = Env::new("limits");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let r = Router::start(env.config()).await;
    let limit = Duration::from_secs(5);

    for bad in
        [&b"GARBAGE\r\n\r\n"[..], b"GET / HTTP/9.9\r\nhost: shop.localhost\r\n\r\n", b"GET /\x01 HTTP/1.1\r\n\r\n"]
    {
        let got = raw(r.port, bad, limit).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{:?} → {got:?}", String::from_utf8_lossy(bad));
    }
    let mut huge = b"GET / HTTP/1.1\r\nhost: shop.localhost\r\n".to_vec();
    huge.extend(format!("x-big: {}\r\n\r\n", "a".repeat(100 * 1024)).as_bytes());
    let got = raw(r.port, &huge, limit).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
    let mut many = b"GET / HTTP/1.1\r\nhost: shop.localhost\r\n".to_vec();
    for i in 0..2000 {
        many.extend(format!("x-h{i}: {}\r\n", "b".repeat(40)).as_bytes());
    }
    many.extend(b"\r\n");
    let got = raw(r.port, &many, limit).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
    assert_eq!(a.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the app");
    assert_eq!(tag(r.port, "shop.localhost").await, a.stem, "still serving");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_closed_after_the_header_timeout_while_others_are_served() {
    let env = Env::new("slow");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let mut config = env.config();
    config.limits.header_read_timeout = Duration::from_secs(2);
    let r = Router::start(config).await;

    let mut silent = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let mut slow = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let started = Instant::now();
    let request = b"GET / HTTP/1.1\r\nhost: shop.localhost\r\nx-slow: 1\r\n\r\n";
    let mut closed_after = None;
    for byte in request.iter().cycle().take(60) {
        // The trickle itself is what is tested: one byte a second.
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        assert_eq!(tag(r.port, "shop.localhost").await, a.stem, "others are served meanwhile");
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the slow client was never closed");
    assert!(closed_after < Duration::from_secs(8), "closed after {closed_after:?}");
    assert!(closed_after >= Duration::from_millis(1500), "closed too early: {closed_after:?}");
    let mut buf = [0u8; 16];
    let silent_read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(silent_read, Ok(Ok(0)) | Ok(Err(_))), "a client that sends nothing is closed too");
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let env = Env::new("maxconn");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let mut config = env.config();
    config.limits.max_connections = 2;
    let r = Router::start(config).await;
    let mut idle1 = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let mut idle2 = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    idle1.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    idle2.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let port = r.port;
    let third = tokio::spawn(async move { tag(port, "shop.localhost").await });
    // A bounded look for an answer that must not come while both slots are taken.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while !third.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(early.is_err(), "a third connection was served beyond the limit of 2");
    drop(idle1);
    let served = tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once a slot frees");
    assert_eq!(served.unwrap(), a.stem);
    drop(idle2);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_counted_from_its_last_response() {
    let env = Env::new("idle");
    let a = app::start(&env.home, Spec::new("shop", "main", 3000, 1)).await;
    let mut config = env.config();
    config.limits.header_read_timeout = Duration::from_secs(2);
    let r = Router::start(config).await;

    let mut conn = TcpStream::connect(("127.0.0.1", r.port)).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: shop.localhost\r\n\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    // Requests 1.5 s apart: each one restarts the idle time, so the
    // connection outlives the timeout while it is used.
    for _ in 0..2 {
        conn.write_all(request).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "served");
        // Waiting is what is tested: less than the timeout between requests.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let idle_from = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(6), conn.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed once idle: {read:?}");
    let idle = idle_from.elapsed() + Duration::from_millis(1500);
    assert!(idle >= Duration::from_millis(1900) && idle < Duration::from_secs(5), "idle {idle:?} before closing");
    assert_eq!(a.ctl.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    r.stop().await.unwrap();
}
