//! What the lab host's tests against a real server share.

use std::time::Duration;

use proofrig_server::http::Server;
use proofrig_server::store::Ctx;

/// `who` acting on the server now, from a loopback address.
pub fn ctx(server: &Server, who: &str) -> Ctx {
    Ctx::new(who, "127.0.0.1:1", server.clock().now())
}

/// Poll `check` (every 50 ms) until it gives a value; fail after `limit` naming `what`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
