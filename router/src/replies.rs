//! What the router answers when it cannot forward a request, worded for
//! each case: what happened, why, and what to do (with the command), for
//! the proxy to send in the client's format. The wording lives here so the
//! proxy reads as its phases; the rendering is `answers`'.

use http::{HeaderValue, Response, StatusCode, header};

use crate::answers::{Answer, Format};
use crate::api::RoutesView;
use crate::body::Body;
use crate::host::{Host, HostError};
use crate::table::ReplicaSet;

/// 400 (no usable Host) or 421 (not a name the router serves).
pub fn host_error(e: HostError, fmt: Format, dash: &str) -> Response<Body> {
    let (status, title, message) = match e {
        HostError::Missing => (StatusCode::BAD_REQUEST, "missing Host", "the request names no host".to_owned()),
        HostError::Duplicate => {
            (StatusCode::BAD_REQUEST, "two Host headers", "the request has more than one Host header".to_owned())
        }
        HostError::Malformed(h) => (StatusCode::BAD_REQUEST, "bad Host", format!("{h:?} is not a valid host name")),
        HostError::Misdirected(h) => (
            StatusCode::MISDIRECTED_REQUEST,
            "not a localhost name",
            format!("{h:?} is not localhost or a name under .localhost; the agentfs router only serves those"),
        ),
    };
    let next = match status {
        StatusCode::MISDIRECTED_REQUEST => {
            "Apps are at `<app>.localhost` and `<instance>.<app>.localhost`; the dashboard lists every one running."
        }
        _ => "Send the request to a name the router serves, such as `<app>.localhost`.",
    };
    Answer::new(status, title, message, dash).next(next).render(fmt)
}

/// 404: no route for `host`. For a known app with an unknown instance, it
/// names the app's instances and how to start this one; else it lists what runs.
pub fn not_found(host: &Host<'_>, routes: &RoutesView, fmt: Format, dash: &str) -> Response<Body> {
    let wanted = host.app_ref().and_then(|r| Some((r.app, r.instance?)));
    let known = wanted.and_then(|(app, instance)| Some((routes.apps.iter().find(|a| a.app == app)?, instance)));
    let (message, next) = match known {
        Some((app, instance)) => {
            let running: Vec<&str> = app.instances.iter().map(|i| i.instance.as_str()).collect();
            (
                format!("{} has no instance {instance} running (it runs {})", app.app, running.join(", ")),
                format!(
                    "Start it in its worktree with `agentfs wrap --instance {instance} -- <command>` \
                     (`agentfs wrap` names it after the git branch), or open a running one below."
                ),
            )
        }
        None => (
            format!("no running app answers to {}", host.name()),
            "Start the app in its directory with `agentfs wrap -- npm run dev` (it is named after the directory, \
             or `--name`), or open a running one below."
                .to_owned(),
        ),
    };
    Answer::new(StatusCode::NOT_FOUND, "unknown host", message, dash).next(next).routes(routes).render(fmt)
}

/// 404 on an app's original port (`localhost:5173`) that no instance holds.
pub fn unknown_on_original_port(host: &str, port: u16, fmt: Format, dash: &str) -> Response<Body> {
    let message = format!("no running app answers to {host} on its port {port}");
    let next = "The instance that had this port has stopped; the dashboard lists the ones running.";
    Answer::new(StatusCode::NOT_FOUND, "unknown host", message, dash).next(next).render(fmt)
}

/// 503: the instance's wrapper runs but its app has not listened yet. The
/// page reloads itself; `Retry-After` tells other clients.
pub fn starting(who: &str, wrapper_pid: u32, fmt: Format, dash: &str) -> Response<Body> {
    let message = format!("{who} is starting (agentfs wrap pid {wrapper_pid}) but has not listened yet; retry soon");
    let next = "Wait a moment: this page reloads by itself. If it never answers, look at the app's terminal \
                (or `agentfs logs`) for an error before it listens.";
    let mut res =
        Answer::new(StatusCode::SERVICE_UNAVAILABLE, "app starting", message, dash).next(next).refresh(2).render(fmt);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    res
}

/// 502: every replica refused or failed; `failures` are (target, why).
pub fn bad_gateway(set: &ReplicaSet, failures: &[(String, String)], fmt: Format, dash: &str) -> Response<Body> {
    let tried: Vec<String> = failures.iter().map(|(t, why)| format!("{t}: {why}")).collect();
    let message = format!("{} is not answering. Tried {}", set.what, tried.join("; "));
    let next = if set.instance.is_empty() {
        format!("Start what this static route points at, or remove the route with `agentfs unroute {}`.", set.what)
    } else {
        format!(
            "The app exited or stopped listening: its terminal (or `agentfs logs {}`) says why; \
             run it again and this URL answers as soon as it listens.",
            set.instance
        )
    };
    Answer::new(StatusCode::BAD_GATEWAY, "app not answering", message, dash).next(next).render(fmt)
}

/// 508: the request came back through the router `hops` times.
pub fn loop_detected(set: &ReplicaSet, hops: u32, fmt: Format, dash: &str) -> Response<Body> {
    let message = format!("{} has passed through {hops} routers: a route points back at the router", set.what);
    let next = if set.instance.is_empty() {
        format!("Remove the route that points at the router with `agentfs unroute {}`.", set.what)
    } else {
        "The app sends its requests back through the router: point it at its upstream, not at the router.".to_owned()
    };
    Answer::new(StatusCode::LOOP_DETECTED, "loop detected", message, dash).next(next).render(fmt)
}

/// 405: CONNECT that is not a WebSocket over HTTP/2.
pub fn connect_not_allowed(fmt: Format, dash: &str) -> Response<Body> {
    let message = "the agentfs router is not a forward proxy".to_owned();
    Answer::new(StatusCode::METHOD_NOT_ALLOWED, "CONNECT not allowed", message, dash).render(fmt)
}

/// 400: the client's body broke while it was passed on.
pub fn bad_request_body(fmt: Format, dash: &str) -> Response<Body> {
    let message = "the request body is malformed (bad chunked encoding, or cut short)".to_owned();
    Answer::new(StatusCode::BAD_REQUEST, "malformed body", message, dash).render(fmt)
}
