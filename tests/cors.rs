#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! `CHAT_CORS_ORIGINS`: real preflight and actual requests, as a browser
//! sends them, against a running server.

mod common;

use awc::http::Method;
use common::{spawn_app, spawn_app_with, TestApp};

const APP: &str = "https://app.example";

async fn preflight(
    app: &TestApp,
    origin: &str,
    method: &str,
    headers: &str,
) -> awc::ClientResponse<impl futures_util::Stream> {
    app.client
        .request(Method::OPTIONS, app.url("/api/chats/"))
        .insert_header(("Origin", origin))
        .insert_header(("Access-Control-Request-Method", method))
        .insert_header(("Access-Control-Request-Headers", headers))
        .send()
        .await
        .unwrap()
}

fn header<'a, S>(response: &'a awc::ClientResponse<S>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[actix_web::test]
async fn a_listed_origin_passes_the_preflight_and_reads_the_answer() {
    let app = spawn_app_with(&[
        "--cors-origins",
        "https://app.example,http://localhost:5173",
    ])
    .await;
    let user = app.user("corsuser").await;

    let response = preflight(&app, APP, "GET", "authorization").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
    let methods = header(&response, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(header(&response, "access-control-max-age"), Some("3600"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);

    let actual = app
        .client
        .get(app.url("/api/chats/"))
        .insert_header(("Origin", "http://localhost:5173"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(actual.status().as_u16(), 200);
    assert_eq!(
        header(&actual, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert!(header(&actual, "vary")
        .unwrap()
        .to_lowercase()
        .contains("origin"));
}

#[actix_web::test]
async fn another_origin_gets_no_permission_but_non_browser_clients_are_unaffected() {
    let app = spawn_app_with(&["--cors-origins", APP]).await;
    let user = app.user("corsother").await;

    for origin in [
        "https://evil.example",
        "https://app.example.evil",
        "http://app.example",
    ] {
        let response = preflight(&app, origin, "GET", "authorization").await;
        assert_eq!(response.status().as_u16(), 400, "{origin}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "{origin}"
        );
    }
    // A header outside the list fails the preflight of a listed origin.
    let response = preflight(&app, APP, "POST", "x-custom").await;
    assert_eq!(response.status().as_u16(), 400);

    // Served (the same-origin web page, apps and scripts send an Origin of
    // their own), but without the header a browser needs to hand the
    // answer to another site's page.
    let actual = app
        .client
        .get(app.url("/api/chats/"))
        .insert_header(("Origin", "https://evil.example"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(actual.status().as_u16(), 200);
    assert_eq!(header(&actual, "access-control-allow-origin"), None);
}

#[actix_web::test]
async fn by_default_no_origin_is_allowed() {
    let app = spawn_app().await;
    let response = preflight(&app, APP, "GET", "authorization").await;
    assert_eq!(
        response.status().as_u16(),
        405,
        "no CORS: OPTIONS is just another method"
    );
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let actual = app
        .client
        .post(app.url("/api/auth/login/"))
        .insert_header(("Origin", APP))
        .send_json(&serde_json::json!({"username": "nobody", "password": "whatever1"}))
        .await
        .unwrap();
    assert_eq!(actual.status().as_u16(), 401);
    assert_eq!(header(&actual, "access-control-allow-origin"), None);
}
