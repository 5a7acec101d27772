//! `GET /healthz` and `GET /readyz`, for load balancers and orchestrators.
//!
//! - `/healthz`: the process answers HTTP. It asks nothing else, so a
//!   database outage never gets every instance restarted at once.
//! - `/readyz`: whether this instance can serve: the database answers
//!   within [`READY_TIMEOUT`] with every migration applied, and it is not
//!   shutting down; `503` otherwise. Redis (in a cluster) is reported but
//!   does not make the instance unready: while Redis is down an instance
//!   still serves its sockets and REST from the database (other instances'
//!   messages arrive at the next resync instead of at once), and failing
//!   every instance's readiness at once would turn a slower cluster into a
//!   dead one. The body says `"degraded"` then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use chat_domain::health::{StoreHealth, StoreProblem};
use serde_json::{json, Value};

use crate::delivery::relay::RedisStatus;
use crate::state::AppState;

/// How long `/readyz` waits for the database (a pooled connection and one
/// query) before it says the database is unreachable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The store check behind `/readyz`. At most one check runs at a time:
/// probes that arrive while one runs wait for its answer (each for at most
/// [`READY_TIMEOUT`]), so a hung database holds one blocking thread however
/// often the probes come.
pub struct Readiness {
    store: Arc<dyn StoreHealth>,
    running: std::sync::Mutex<Option<CheckResult>>,
}

/// The answer of the check in flight, `None` until it returns.
type CheckResult = tokio::sync::watch::Receiver<Option<Result<(), StoreProblem>>>;

impl Readiness {
    pub fn new(store: Arc<dyn StoreHealth>) -> Self {
        Self {
            store,
            running: std::sync::Mutex::new(None),
        }
    }

    /// The check in flight, or a new one.
    fn current_check(&self) -> CheckResult {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(check) = running.as_ref().filter(|c| c.borrow().is_none()) {
            return check.clone();
        }
        let (answer, check) = tokio::sync::watch::channel(None);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let _ = answer.send(Some(store.check(READY_TIMEOUT)));
        });
        *running = Some(check.clone());
        check
    }

    /// The database's part of the answer: whether it is ready, and the JSON
    /// that says so.
    async fn database(&self) -> (bool, Value) {
        let started = Instant::now();
        let mut check = self.current_check();
        let answer = tokio::time::timeout(READY_TIMEOUT, async {
            match check.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone(),
                Err(_) => Some(Err(StoreProblem::Unreachable(
                    "the check did not finish".into(),
                ))),
            }
        })
        .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let failing = |error: String| {
            (
                false,
                json!({"status": "failing", "error": error, "checked_in_ms": elapsed_ms}),
            )
        };
        match answer {
            Ok(Some(Ok(()))) => (true, json!({"status": "ok", "checked_in_ms": elapsed_ms})),
            Ok(Some(Err(problem))) => failing(problem.to_string()),
            Ok(None) | Err(_) => {
                failing(format!("no answer within {} ms", READY_TIMEOUT.as_millis()))
            }
        }
    }
}

// The handlers build their JSON with `json!`; the next types only describe
// it to the OpenAPI document (rest/openapi.rs), and tests/openapi.rs checks
// real answers against that document.

/// `/healthz`'s body.
#[derive(utoipa::ToSchema)]
#[schema(as = Health)]
#[allow(dead_code)]
pub(crate) struct HealthBody {
    #[schema(pattern = "^ok$")]
    status: String,
    /// The server's version.
    version: String,
}

/// `/readyz`'s body.
#[derive(utoipa::ToSchema)]
#[schema(as = Readiness)]
#[allow(dead_code)]
pub(crate) struct ReadinessBody {
    status: ReadinessStatus,
    checks: ReadinessChecks,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum ReadinessStatus {
    /// Every check passes.
    Ready,
    /// Redis is down: this instance still serves, other instances'
    /// messages arrive at the next resync.
    Degraded,
    /// The database fails its check, or the server is shutting down.
    Unavailable,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReadinessChecks {
    database: Check,
    /// Only when scale-out (`CHAT_REDIS_URL`) is configured.
    #[schema(nullable = false)]
    redis: Option<Check>,
    /// Only while shutting down.
    #[schema(nullable = false)]
    shutdown: Option<Check>,
}

/// One check's outcome; which optional fields appear depends on the check.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Check {
    status: CheckStatus,
    /// Why it fails.
    #[schema(nullable = false)]
    error: Option<String>,
    /// Database: how long the check took.
    #[schema(nullable = false)]
    checked_in_ms: Option<f64>,
    /// Redis: seconds since the connection was made.
    #[schema(nullable = false)]
    connected_for_s: Option<u64>,
    /// Redis: seconds since the connection was lost.
    #[schema(nullable = false)]
    down_for_s: Option<u64>,
    /// Redis: what being down means for clients.
    #[schema(nullable = false)]
    effect: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum CheckStatus {
    Ok,
    Failing,
}

/// `200 {"status": "ok"}` while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves HTTP (nothing else is checked)", body = HealthBody)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// `200` with `"ready"` (or `"degraded"`: Redis down), `503` with
/// `"unavailable"` when the database fails its check or the server is
/// shutting down. Each check's outcome is in `checks`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready, or degraded (Redis down)", body = ReadinessBody),
        (status = 503, description = "The database fails its check, or shutting down", body = ReadinessBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let shutting_down = *state.hub.shutdown_signal().borrow();
    let (database_ok, database) = state.readiness.database().await;
    let mut checks = json!({ "database": database });
    let mut degraded = false;
    if let Some(relay) = &state.relay {
        let (ok, redis) = redis_check(relay.status());
        degraded = !ok;
        checks["redis"] = redis;
    }
    if shutting_down {
        checks["shutdown"] = json!({"status": "failing", "error": "shutting down"});
    }
    let (status, body_status) = if !database_ok || shutting_down {
        (
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        )
    } else if degraded {
        (actix_web::http::StatusCode::OK, "degraded")
    } else {
        (actix_web::http::StatusCode::OK, "ready")
    };
    HttpResponse::build(status)
        .insert_header(("cache-control", "no-store"))
        .json(json!({"status": body_status, "checks": checks}))
}

fn redis_check(status: RedisStatus) -> (bool, Value) {
    match status {
        RedisStatus::Connected { since } => (
            true,
            json!({"status": "ok", "connected_for_s": since.elapsed().as_secs()}),
        ),
        RedisStatus::Down { since, error } => (
            false,
            json!({
                "status": "failing",
                "error": error,
                "down_for_s": since.elapsed().as_secs(),
                "effect": "messages from other instances arrive at the next resync, from the database",
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A database that hangs until released, counting the checks that ran.
    struct Hung {
        started: AtomicUsize,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl StoreHealth for Hung {
        fn check(&self, _timeout: Duration) -> Result<(), StoreProblem> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            Ok(())
        }
    }

    #[actix_web::test]
    async fn a_hung_database_fails_the_check_in_time_and_holds_one_thread_however_many_probes() {
        let (release, released) = std::sync::mpsc::channel();
        let store = Arc::new(Hung {
            started: AtomicUsize::new(0),
            release: std::sync::Mutex::new(released),
        });
        let readiness = Readiness::new(store.clone());
        let started = Instant::now();
        let (first, second, third) = tokio::join!(
            readiness.database(),
            readiness.database(),
            readiness.database()
        );
        let elapsed = started.elapsed();
        for (ok, body) in [first, second, third] {
            assert!(!ok);
            assert_eq!(body["status"], "failing");
            assert_eq!(body["error"], "no answer within 2000 ms");
        }
        // Bounded by the timeout, not by the database (which would take 10 s).
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // A later probe, the database still hung, waits for the same check.
        let (ok, _) = readiness.database().await;
        assert!(!ok);
        assert_eq!(store.started.load(Ordering::SeqCst), 1);
        // Once it answers, so do the probes (with its answer, or with a
        // check of their own once its answer is in).
        release.send(()).unwrap();
        release.send(()).unwrap();
        let (ok, body) = readiness.database().await;
        assert!(ok, "{body:?}");
        assert!(store.started.load(Ordering::SeqCst) <= 2);
    }

    #[actix_web::test]
    async fn a_store_problem_is_named() {
        struct Behind;
        impl StoreHealth for Behind {
            fn check(&self, _timeout: Duration) -> Result<(), StoreProblem> {
                Err(StoreProblem::MigrationsPending(2))
            }
        }
        let (ok, body) = Readiness::new(Arc::new(Behind)).database().await;
        assert!(!ok);
        assert_eq!(body["error"], "2 migration(s) not applied");
    }

    #[test]
    fn redis_down_is_reported_with_its_reason_and_what_it_costs() {
        let (ok, body) = redis_check(RedisStatus::Down {
            since: Instant::now(),
            error: "Connection refused".into(),
        });
        assert!(!ok);
        assert_eq!(body["status"], "failing");
        assert_eq!(body["error"], "Connection refused");
        let (ok, body) = redis_check(RedisStatus::Connected {
            since: Instant::now(),
        });
        assert!(ok);
        assert_eq!(body["status"], "ok");
    }
}
