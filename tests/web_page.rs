#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! The web client's files: served at `/` and `/web/<file>` from the binary,
//! with the right types, a strict Content-Security-Policy, revalidation by
//! ETag, and JSON 404s for anything else. What the page does is tested in a
//! real browser (web-tests/).

mod common;

use common::spawn_app;

/// A status, the headers and the raw body (the JSON helpers of `common`
/// would not take HTML or scripts).
struct Fetched {
    status: u16,
    headers: actix_web::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

async fn fetch(app: &common::TestApp, path: &str, if_none_match: Option<&str>) -> Fetched {
    let mut request = app.client.get(app.url(path));
    if let Some(tag) = if_none_match {
        request = request.insert_header(("If-None-Match", tag));
    }
    let mut response = request.send().await.expect("request sent");
    let body = response.body().await.expect("a body").to_vec();
    Fetched {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body,
    }
}

#[actix_web::test]
async fn the_page_is_served_at_the_root_with_a_strict_policy() {
    let app = spawn_app().await;

    let page = fetch(&app, "/", None).await;
    let html = page.text();

    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let csp = page.header("content-security-policy");
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert!(
        html.contains(r#"<script type="module" src="/web/js/main.js">"#),
        "{html}"
    );
    assert!(
        !html.contains("<script>"),
        "no inline script: the policy forbids it"
    );
}

#[actix_web::test]
async fn every_file_the_page_names_is_served_with_its_type() {
    let app = spawn_app().await;

    // Every module the page loads, found by following the imports, so a
    // new file that is not embedded fails here, not in a browser.
    let mut pending = vec!["/web/js/main.js".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let response = fetch(&app, &path, None).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            "text/javascript; charset=utf-8",
            "{path}"
        );
        for line in response.text().lines().filter(|l| l.starts_with("import ")) {
            let module = line.rsplit_once("from '").unwrap().1.trim_end_matches("';");
            let name = module.trim_start_matches("./");
            pending.push(format!("/web/js/{name}"));
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");

    for (path, kind) in [
        ("/web/style.css", "text/css; charset=utf-8"),
        ("/web/icon.svg", "image/svg+xml"),
    ] {
        let response = fetch(&app, path, None).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("content-type"), kind, "{path}");
    }
    assert!(chat_api::web_page::total_bytes() < 150 * 1024);
}

#[actix_web::test]
async fn a_file_is_revalidated_by_its_etag() {
    let app = spawn_app().await;

    let first = fetch(&app, "/web/style.css", None).await;
    let etag = first.header("etag");
    let again = fetch(&app, "/web/style.css", Some(etag)).await;
    let other = fetch(&app, "/web/js/main.js", None).await;

    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert_eq!(first.header("cache-control"), "no-cache");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_ne!(other.header("etag"), etag);
}

#[actix_web::test]
async fn unknown_files_and_other_methods_answer_json_errors() {
    let app = spawn_app().await;

    for path in [
        "/web/nope.js",
        "/web/../Cargo.toml",
        "/web/js/../../Cargo.toml",
        "/index.html",
        "/web/",
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(reply.body["error"].is_string(), "{path}");
    }
    let post = app.post_raw("/", None, None, "x").await;
    assert_eq!(post.status, 405);
}
