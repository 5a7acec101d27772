#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The OpenAPI document cannot drift: what the server serves is the
//! committed `docs/openapi.json`, every route the server registers is in
//! it, and every documented method is the one the route answers.
//! (schemathesis, run by `make test-schemathesis`, checks real answers
//! against it.)
//!
//! After changing a route or a body: `make openapi` rewrites the copy.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::spawn_app;
use serde_json::Value;

const COMMITTED: &str = "docs/openapi.json";

#[actix_web::test]
async fn the_served_document_is_the_committed_copy() {
    let generated = chat_api::rest::openapi::document_json();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{COMMITTED} is not what the code generates: run `make openapi` and commit it"
    );

    let app = spawn_app().await;
    let reply = app.get("/api/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let committed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(reply.body, committed, "the served document differs");
    assert_eq!(committed["openapi"], "3.1.0");
    assert_eq!(committed["info"]["version"], env!("CARGO_PKG_VERSION"));
}

/// `web::resource("...")` paths registered in crates/api/src/lib.rs, in
/// OpenAPI's spelling (`{name:regex}` becomes `{name}`).
fn registered_paths() -> BTreeSet<String> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/api/src/lib.rs"),
    )
    .unwrap();
    source
        .split("web::resource(\"")
        .skip(1)
        .map(|rest| {
            let path = &rest[..rest.find('"').unwrap()];
            path.split('/')
                .map(|segment| match segment.split_once(':') {
                    Some((name, _)) if segment.starts_with('{') => format!("{name}}}"),
                    _ => segment.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

fn documented_operations(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().cloned().collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let document: Value = serde_json::from_str(&chat_api::rest::openapi::document_json()).unwrap();
    let documented: BTreeSet<String> = documented_operations(&document).into_keys().collect();
    // The web page, its assets and the redirect to the documentation page
    // are for people, not the API.
    let registered: BTreeSet<String> = registered_paths()
        .into_iter()
        .filter(|p| p != "/" && !p.starts_with("/web/") && p != "/api/docs")
        .collect();
    assert!(
        registered.len() >= 11,
        "the route scan found {registered:?}"
    );
    assert_eq!(registered, documented);
}

#[actix_web::test]
async fn each_route_answers_exactly_the_documented_methods() {
    let app = spawn_app().await;
    let user = app.user("opendoc").await;
    let document: Value = serde_json::from_str(&chat_api::rest::openapi::document_json()).unwrap();
    for (path, methods) in documented_operations(&document) {
        let url = app.url(&path.replace("{chat_id}", "1"));
        for method in ["get", "post", "put", "patch", "delete"] {
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(&user.token);
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if methods.contains(method) {
                assert_ne!(status, 405, "{method} {path} is documented but refused");
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} answers {status} but is not documented"
                );
                let allow = response.headers().get("allow").unwrap().to_str().unwrap();
                let allowed: BTreeSet<String> = allow.split(", ").map(str::to_lowercase).collect();
                assert_eq!(allowed, methods, "{method} {path}: Allow: {allow}");
            }
        }
    }
}

#[actix_web::test]
async fn the_documentation_page_is_served_with_its_assets_embedded() {
    let app = spawn_app().await;
    let mut page = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads something from elsewhere: {html}"
    );
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        let mut response = app
            .client
            .get(app.url(&format!("/api/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        assert!(!response.body().limit(8 << 20).await.unwrap().is_empty());
    }
    let initializer = app
        .client
        .get(app.url("/api/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let initializer = String::from_utf8(initializer.to_vec()).unwrap();
    assert!(initializer.contains("/api/openapi.json"), "{initializer}");

    let without_redirects = awc::Client::builder().disable_redirects().finish();
    let redirect = without_redirects
        .get(app.url("/api/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status().as_u16(), 308);
    assert_eq!(redirect.headers().get("location").unwrap(), "/api/docs/");
}
