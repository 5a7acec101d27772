#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! `/healthz` and `/readyz` on a single instance (SQLite, or PostgreSQL in
//! the PostgreSQL suite). In a cluster `/readyz` also reports Redis; that
//! is tested with a real Redis stopped and started in tests/cluster.rs.

mod common;

use common::spawn_app;

#[actix_web::test]
async fn healthz_answers_without_asking_anything_else() {
    let app = spawn_app().await;
    let mut response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_web::test]
async fn readyz_is_ready_with_the_database_checked_and_no_redis_configured() {
    let app = spawn_app().await;
    let reply = app.get("/readyz", None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "ready");
    let database = &reply.body["checks"]["database"];
    assert_eq!(database["status"], "ok", "{database:?}");
    assert!(database["checked_in_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        reply.body["checks"].get("redis").is_none(),
        "a single instance has no Redis to report: {:?}",
        reply.body
    );
}

#[actix_web::test]
async fn readyz_says_unavailable_once_the_server_is_shutting_down() {
    let app = spawn_app().await;
    // What a stop does first: every socket is told to go, and from then on
    // a load balancer must stop sending new clients here.
    app.hub.shut_down();
    let reply = app.get("/readyz", None).await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "unavailable");
    assert_eq!(reply.body["checks"]["shutdown"]["status"], "failing");
    // The process is still up.
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

#[actix_web::test]
async fn the_health_routes_take_get_only() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let reply = app.post_json(path, None, &serde_json::json!({})).await;
        assert_eq!(reply.status, 405, "POST {path}: {:?}", reply.body);
    }
}
