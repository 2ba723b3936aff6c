//! Socket behaviour that other projects' test suites check (issue 19), each
//! fixture run natively and under the shim: the two must give the same
//! answers, and the native one must be what TCP is known to say (so a broken
//! fixture cannot pass by agreeing with a broken shim).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const RUN: Duration = Duration::from_secs(60);

/// Runs `program args` natively (if `native`) or under the shim; its last
/// JSON line, and the process's stderr.
fn json_of(home: &Home, native: bool, program: &str, args: &[String]) -> (Value, String) {
    let mut cmd = if native {
        let mut c = Command::new(program);
        clean_env(&mut c);
        c
    } else {
        home.wrapped("app", "main", program)
    };
    cmd.args(args);
    let mut p = Proc::spawn(cmd);
    let status = p.wait(RUN);
    assert!(status.success(), "{program} {args:?} (native: {native}) failed: {status}\n{}", p.output());
    let out = p.stdout();
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in:\n{}", p.output()));
    (serde_json::from_str(line).unwrap(), p.stderr())
}

/// The fixture's answers natively and under the shim, on fresh ports each.
fn both_ways(tag: &str, program: &str, args: impl Fn(u16) -> Vec<String>, ports: u16) -> (Value, Value, String) {
    let home = Home::new(tag);
    let (native, _) = json_of(&home, true, program, &args(free_ports(ports)));
    let (shimmed, log) = json_of(&home, false, program, &args(free_ports(ports)));
    (native, shimmed, log)
}

/// A C fixture taking one port, compiled and run both ways.
fn c_both_ways(tag: &str, source: &str) -> (Value, Value, String) {
    let home = Home::new(tag);
    let exe = compile_c(source, home.path(), &[]).to_str().unwrap().to_owned();
    both_ways(tag, &exe, |b| vec![b.to_string()], 1)
}

fn same(native: &Value, shimmed: &Value, log: &str) {
    for (check, want) in native.as_object().unwrap() {
        assert_eq!(&shimmed[check], want, "{check}: natively {want}, under the shim {}\n{log}", shimmed[check]);
    }
}

/// Runs sections of `client_bind.py` both ways; checks the native answers
/// against `expect`, the shim's against the native ones, and that the shim
/// logged each of `decisions`.
fn client_bind(tag: &str, section: &str, expect: Value, decisions: &[&str]) {
    let script = fixture("client_bind.py").to_str().unwrap().to_owned();
    let args = |b: u16| vec![script.clone(), b.to_string(), section.to_owned()];
    let (native, shimmed, log) = both_ways(tag, "python3", args, 8);
    for (check, want) in expect.as_object().unwrap() {
        assert_eq!(&native[check], want, "native {check}: {native}");
    }
    same(&native, &shimmed, &log);
    for d in decisions {
        assert!(log.contains(d), "the shim really took part ({d:?}):\n{log}");
    }
}

#[test]
fn b9_each_family_reaches_only_its_own_listeners() {
    let expect = serde_json::json!({
        "v6_connect_to_v4_only_listener": "ECONNREFUSED",
        "connect_0000": "ok",
        "connect_0000_peer": ["127.0.0.1", true],
        "connect_0000_accepted": 0,
        "each_family_to_its_listener": [0, 1, 0],
        "connect_v6_wildcard": "ok",
        "connect_v6_wildcard_accepted": 1,
    });
    client_bind("families", "families", expect, &["passed through (no listener", "connect 0.0.0.0:", "connect [::]:"]);
}

#[test]
fn b2_clients_bound_before_connect_reach_the_instance_and_keep_their_port() {
    let expect = serde_json::json!({
        "bound_port0": [true, "127.0.0.1", true, 0],
        "bound_fixed": [true, "127.0.0.1", true, 0],
        "bound_fixed_port": true,
        "bound_wildcard_fixed": [true, "127.0.0.1", true, 0],
        "create_connection_source_address": [true, true],
        "bindresvport": [0, true, "ok"],
        "bindresvport_names": [true, true],
        "connected_again": "EISCONN",
    });
    client_bind("bound", "bound", expect, &["redirected to"]);
}

#[test]
fn b2_a_converted_client_bind_to_a_tcp_destination_is_tcp_again() {
    let expect = serde_json::json!({"bound_client_to_tcp_port": "ok", "bound_client_to_tcp_port_names": [true, true]});
    client_bind("tcpagain", "tcp_again", expect, &["made TCP again"]);
}

#[test]
fn b3_a_retry_after_a_refused_connect_is_redirected() {
    let expect = serde_json::json!({
        "connect_before_listen": "ECONNREFUSED", "retry_after_refusal": "ok", "retry_accepted": true,
    });
    client_bind("retry", "retry", expect, &["redirected to"]);
}

#[test]
fn b8_held_ports_are_eaddrinuse() {
    let expect = serde_json::json!({"bind_held_port": "EADDRINUSE", "rebind_port0_listener_port": "EADDRINUSE"});
    client_bind("held", "held", expect, &["this process holds the port on TCP"]);
}

#[test]
fn b6_both_ends_agree_on_the_client_port() {
    client_bind("ports", "ports_agree", serde_json::json!({"unbound_ports_agree": [true, true]}), &["redirected to"]);
}

#[test]
fn b2_node_local_port_reaches_the_instance_and_is_seen_by_the_server() {
    let script = fixture("node_localport.js").to_str().unwrap().to_owned();
    let args = |b: u16| vec![script.clone(), b.to_string(), (b + 1).to_string()];
    let (native, shimmed, log) = both_ways("localport", "node", args, 2);
    assert_eq!(native["localPort"], native["remotePort"], "{native}");
    assert!(native["localPort"].is_u64(), "{native}");
    assert_eq!(shimmed["error"], Value::Null, "{shimmed}\n{log}");
    assert_eq!(shimmed["localPort"], shimmed["remotePort"], "{shimmed}\n{log}");
    assert!(log.contains("redirected to"), "{log}");
}

#[test]
fn b1_tcp_info_reports_the_connection_state() {
    let script = fixture("tcp_info.py").to_str().unwrap().to_owned();
    let (native, shimmed, log) = both_ways("tcpinfo", "python3", |b| vec![script.clone(), b.to_string()], 1);
    let expect = serde_json::json!({
        "bound": 7, "listener": 10, "client": [1, true], "accepted": [1, true],
        "same_length": true, "accepted_after_peer_close": 8,
    });
    assert_eq!(native, expect, "native");
    same(&native, &shimmed, &log);
    assert!(log.contains("converted to") && log.contains("redirected to"), "{log}");
}

#[test]
fn b4_b5_threaded_sendmsg_recvmsg_with_addresses_echo_as_on_tcp() {
    let (native, shimmed, log) = c_both_ways("msgecho", "msg_echo.c");
    let expect = serde_json::json!({
        "connect_rc": 0, "send_errors": 0, "recv_errors": 0, "namelen_nonzero": 0, "echo_mismatch": 0, "rounds": 80,
    });
    assert_eq!(native, expect, "native");
    same(&native, &shimmed, &log);
    assert!(log.matches("redirected to").count() >= 8, "{log}");
}

#[test]
fn b7_a_write_after_the_peer_closed_is_accepted_once_then_epipe() {
    let (native, shimmed, log) = c_both_ways("peerclose", "peer_close.c");
    let expect = serde_json::json!({
        "eof": 0, "empty_send": 0, "first_write": 3, "first_sigpipes": 0, "second_write": -1, "second_errno": libc::EPIPE,
        "sigpipes": 2, "getpeername_errno": libc::ENOTCONN, "tcp_state": 7,
        "after_own_shutdown": [-1, libc::EPIPE, 1], "nosignal": [-1, 0],
    });
    assert_eq!(native, expect, "native");
    same(&native, &shimmed, &log);
    assert!(log.contains("redirected to"), "{log}");
}

#[test]
fn b8_node_held_ports_are_eaddrinuse_and_four_tuples_unique() {
    let script = fixture("node_ports.js").to_str().unwrap().to_owned();
    let (native, shimmed, log) = both_ways("nodeports", "node", |b| vec![script.clone(), b.to_string()], 4);
    for (check, want) in native.as_object().unwrap() {
        let expected = match check.as_str() {
            "first_client" => "ok",
            "second_client_same_four_tuple" => "EADDRNOTAVAIL",
            _ => "EADDRINUSE",
        };
        assert_eq!(want, expected, "native {check}: {native}");
    }
    assert_eq!(native.as_object().unwrap().len(), 10, "{native}");
    same(&native, &shimmed, &log);
    assert!(log.contains("this process holds the port on TCP") && log.contains("converted to"), "{log}");
}

#[test]
fn b9_node_autoselectfamily_falls_back_to_the_ipv4_listener() {
    let script = fixture("node_autoselect.js").to_str().unwrap().to_owned();
    let (native, shimmed, log) = both_ways("autoselect", "node", |b| vec![script.clone(), b.to_string()], 1);
    assert_eq!(native, serde_json::json!({"data": "hi", "family": "IPv4", "address": "127.0.0.1"}), "native");
    same(&native, &shimmed, &log);
    assert!(log.contains("connect [::1]:") && log.contains("redirected to"), "{log}");
}

#[test]
fn connections_buffer_as_much_as_loopback_tcp_before_eagain() {
    let script = fixture("send_buffers.py").to_str().unwrap().to_owned();
    let (native, shimmed, log) = both_ways("sendbuf", "python3", |b| vec![script.clone(), b.to_string()], 1);
    let expect = serde_json::json!({
        "client_sndbuf_over_1mib": true, "client_buffers_over_1mib": true, "server_buffers_over_1mib": true,
        "set_before_connect_reads_doubled": 200000,
    });
    assert_eq!(native, expect, "native");
    same(&native, &shimmed, &log);
    assert!(log.contains("redirected to"), "{log}");
}

#[test]
fn a_client_is_connected_before_the_server_accepts_it() {
    // CPython's TCPCloserTest: another thread looks at the client as soon as accept() returns.
    let (native, shimmed, log) = c_both_ways("connectseen", "connect_seen.c");
    let expect = serde_json::json!({"rounds": 300, "connect_errors": 0, "no_peer": 0, "no_eof": 0});
    assert_eq!(native, expect, "native");
    same(&native, &shimmed, &log);
    assert!(log.matches("redirected to").count() >= 300, "{log}");
}
