//! Upgraded connections (WebSocket, HMR): once the app answers 101, the
//! client's and the app's byte streams are joined both ways until either side
//! closes. No idle timeout, and nothing here looks at the route table, so a
//! table swap never cuts a tunnel.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::proxy::ConnCtx;

/// Joins the client and the app; `cx` keeps the client's connection permit.
pub async fn run(client: OnUpgrade, app: OnUpgrade, cx: Arc<ConnCtx>) {
    let (client, app) = match tokio::try_join!(client, app) {
        Ok(pair) => pair,
        Err(e) => return tracing::debug!(error = %e, "upgrade did not complete"),
    };
    let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
    match tokio::io::copy_bidirectional(&mut client, &mut app).await {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel ended"),
    }
    drop(cx);
}
