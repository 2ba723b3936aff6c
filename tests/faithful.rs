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

fn same(native: &Value, shimmed: &Value, log: &str) {
    for (check, want) in native.as_object().unwrap() {
        assert_eq!(&shimmed[check], want, "{check}: natively {want}, under the shim {}\n{log}", shimmed[check]);
    }
}

#[test]
fn families_and_clients_bound_before_connect_behave_as_on_tcp() {
    let script = fixture("client_bind.py").to_str().unwrap().to_owned();
    let (native, shimmed, log) = both_ways("clientbind", "python3", |b| vec![script.clone(), b.to_string()], 8);
    let expect = serde_json::json!({
        "v6_connect_to_v4_only_listener": "ECONNREFUSED",
        "connect_0000": "ok",
        "each_family_to_its_listener": [0, 1, 0],
        "connect_v6_wildcard_accepted": 1,
        "bound_port0": [true, "127.0.0.1", true, 0],
        "bound_fixed": [true, "127.0.0.1", true, 0],
        "bound_wildcard_fixed": [true, "127.0.0.1", true, 0],
        "create_connection_source_address": [true, true],
        "bindresvport_names": [true, true],
        "bind_held_port": "EADDRINUSE",
        "retry_after_refusal": "ok",
        "retry_accepted": true,
        "rebind_port0_listener_port": "EADDRINUSE",
        "bound_client_to_tcp_port_names": [true, true],
        "connected_again": "EISCONN",
    });
    for (check, want) in expect.as_object().unwrap() {
        assert_eq!(&native[check], want, "native {check}: {native}");
    }
    same(&native, &shimmed, &log);
    for converted in ["connect 0.0.0.0:", "connect [::1]:", "made TCP again", "this process holds the port on TCP"] {
        assert!(log.contains(converted), "the shim really took part ({converted:?}):\n{log}");
    }
    assert!(log.matches("redirected to").count() >= 10, "{log}");
}

#[test]
fn node_local_port_reaches_the_instance_and_is_seen_by_the_server() {
    let script = fixture("node_localport.js").to_str().unwrap().to_owned();
    let args = |b: u16| vec![script.clone(), b.to_string(), (b + 1).to_string()];
    let (native, shimmed, log) = both_ways("localport", "node", args, 2);
    assert_eq!(native["localPort"], native["remotePort"], "{native}");
    assert!(native["localPort"].is_u64(), "{native}");
    assert_eq!(shimmed["error"], Value::Null, "{shimmed}\n{log}");
    assert_eq!(shimmed["localPort"], shimmed["remotePort"], "{shimmed}\n{log}");
    assert!(log.contains("redirected to"), "{log}");
}
