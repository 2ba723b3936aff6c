//! `agentfs mcp` driven by a real MCP client that no one here wrote: the
//! official Python SDK's stdio client (tests/fixtures/mcp_client.py)
//! initialises it, lists the tools, starts a server in a git worktree via
//! `start` with `cwd`, gets its URL, fetches it through the router, reads
//! its logs, sees tool errors, and stops it.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[test]
fn the_python_sdk_starts_finds_reads_and_stops_a_server() {
    let env = Env::new("mcp");
    let dir = TempDir::new("mcprepo");
    let main = &shop_repo(dir.path(), &[])[0];
    let mut c = Command::new("python3");
    clean_env(&mut c);
    c.arg(fixture("mcp_client.py"))
        .arg(agentfs())
        .arg(main)
        .arg(env.port.to_string())
        .env("AGENTFS_HOME", env.home.path())
        .env("AGENTFS_HTTP_PORT", env.port.to_string())
        .env("PYTHONUNBUFFERED", "1");
    let mut p = Proc::spawn(c);
    let status = p.wait(Duration::from_secs(90));
    assert!(status.success(), "the MCP client failed\n{}", p.output());
    let seen: Value = serde_json::from_str(p.stdout().trim()).unwrap_or_else(|e| panic!("{e}\n{}", p.output()));
    let url = format!("http://main.shop.localhost:{}", env.port);

    assert_eq!(seen["server"], "agentfs");
    let tools = json!(["get_url", "list_instances", "logs", "restart", "route", "start", "stop", "unroute"]);
    assert_eq!(seen["tools"], tools);
    assert_eq!(seen["schemas"], true, "every tool has an input and an output schema");
    assert_eq!((seen["start_error"].clone(), seen["start"]["url"].clone()), (json!(false), json!(url)), "{seen}");
    assert_eq!(seen["start"]["v"], 1);
    assert_eq!(seen["start"]["instance"]["state"], "live");
    assert_eq!(seen["url"], json!(url));
    assert_eq!(seen["fetched"], json!([200, "main tree"]));
    let logs = seen["logs"].as_array().unwrap();
    assert!(!logs.is_empty() && logs.iter().all(|l| l.as_str().unwrap().contains("\"GET / HTTP/1.1\" 200")), "{seen}");
    let missing = &seen["missing"];
    assert_eq!(missing[0], true, "a tool error: {seen}");
    assert!(missing[1][0].as_str().unwrap().starts_with("agentfs: no instance nope.shop is running"), "{seen}");
    assert_eq!(seen["bad_cwd"][0], true);
    assert!(seen["bad_cwd"][1][0].as_str().unwrap().contains("not an absolute path"), "{seen}");
    assert_eq!(seen["stop"]["message"], "stopped main.shop");
    assert_eq!(seen["after_stop"], json!({"v": 1, "instances": []}));
    assert_eq!(env.home.run_files(), Vec::<String>::new(), "run/ is empty");
}
