//! The fault scenarios every server-backed storage runs: its server killed
//! under a running limiter and started again. Each failure policy answers as
//! configured, the call that meets the dead server returns within a bound,
//! and limiting resumes by itself once the server is back.
//!
//! Every scenario builds its limiter over `storage` with one default limit,
//! `2/minute`, and the policy under test; the restarted server starts empty
//! (no persistence), so two hits are allowed again after it.

use std::time::{Duration, Instant};

use limiter_core::AnyStorage;
use limiter_core::engine::{FailurePolicy, Limiter, Verdict};

use crate::TestRequest;
use crate::server::ServerProcess;

/// How long a backend may take to notice its server is back (reconnecting
/// in the background, or on the next call).
const RECOVERY: Duration = Duration::from_secs(10);

fn limiter(storage: AnyStorage, policy: FailurePolicy) -> Limiter<TestRequest> {
    Limiter::builder().any_storage(storage).on_storage_failure(policy).default_limits("2/minute").build().unwrap()
}

/// Checks `request` until the verdict is `wanted`, for at most
/// [`RECOVERY`].
async fn until(limiter: &Limiter<TestRequest>, request: &TestRequest, wanted: Verdict) -> bool {
    let deadline = Instant::now() + RECOVERY;
    while Instant::now() < deadline {
        if limiter.check(request).await.verdict() == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Fail closed: while the server is down every request gets a 503 within
/// `bound` (the storage's timeouts plus slack for a loaded machine); after a
/// restart the limit counts again from zero.
pub async fn fail_closed_then_recovers(server: &mut ServerProcess, storage: AnyStorage, bound: Duration) {
    let limiter = limiter(storage, FailurePolicy::FailClosed { retry_after: Duration::from_secs(3) });
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.kill();
    let started = Instant::now();
    let down = limiter.check(&request).await;
    assert_eq!(down.verdict(), Verdict::Unavailable);
    assert_eq!(down.rejection().map(|r| r.status), Some(503));
    assert!(started.elapsed() < bound, "the call to a dead server waited {:?}", started.elapsed());
    server.restart();
    assert!(until(&limiter, &request, Verdict::Allowed).await, "limiting resumes after the restart");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Limited);
}

/// Fail open: while the server is down every request passes, marked as
/// such.
pub async fn fail_open_while_down(server: &mut ServerProcess, storage: AnyStorage) {
    let limiter = limiter(storage, FailurePolicy::FailOpen);
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.kill();
    for _ in 0..5 {
        assert_eq!(limiter.check(&request).await.verdict(), Verdict::FailedOpen);
    }
}

/// In-memory fallback: while the server is down the limit is counted in
/// memory (from zero); once it is back the server decides again.
pub async fn fallback_then_back(server: &mut ServerProcess, storage: AnyStorage) {
    let limiter = limiter(storage, FailurePolicy::InMemoryFallback);
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.kill();
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Limited);
    server.restart();
    // The limiter probes the storage again a second after the failure; the
    // server, empty again, then allows.
    assert!(until(&limiter, &request, Verdict::Allowed).await, "back on the server after the restart");
}
