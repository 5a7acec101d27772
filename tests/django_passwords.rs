#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
//! Accounts imported from Django keep their passwords: a row whose hash is
//! Django's `auth_user.password`, copied verbatim, logs in over HTTP, and
//! its first login replaces the hash with our Argon2id without revoking
//! any token; an unusable Django password is refused like a wrong one.
//!
//! The rows are written straight into the server's database (the API makes
//! only Argon2id hashes), so with `TEST_STORE=memory` these tests say they
//! are skipped and pass.

mod common;

use chat_domain::user::{NewUser, PasswordHash, User, UserRepository as _, Username};
use common::{spawn_app, TestApp};

/// Made by Django 5.1.15: `make_password("correct horse ☃ battery",
/// hasher="pbkdf2_sha256")` (as in `crates/api/src/auth/password.rs`).
const DJANGO_PASSWORD: &str = "correct horse ☃ battery";
const DJANGO_PBKDF2_SHA256: &str = "pbkdf2_sha256$870000$tEWDNyJmGSaG3vFFdGNSq0$\
    UwyOFAg7VsHsLXS59FmIk2PXAed1X5AAACVRez1WU+A=";
/// `make_password(None)`: what the import stores for inactive accounts.
const DJANGO_UNUSABLE: &str = "!odFoDONx9G7Zkzy0jvkbb1YtivtLzJ3IdSGcFJGz";

/// Stores `username` with `hash` as an import would, or `None` when the
/// server keeps its data in memory.
fn import(app: &TestApp, username: &str, hash: &str) -> Option<User> {
    let Some(database) = app.database() else {
        eprintln!("skipped: the in-memory store cannot be written from the test");
        return None;
    };
    let user = database
        .connect()
        .unwrap()
        .create_user(&NewUser {
            username: Username::parse(username).unwrap(),
            password_hash: PasswordHash::new(hash),
        })
        .unwrap();
    Some(user)
}

fn stored_hash(app: &TestApp, username: &str) -> String {
    let store = app.database().unwrap().connect().unwrap();
    let credentials = store
        .find_credentials(&Username::parse(username).unwrap())
        .unwrap()
        .unwrap();
    credentials.password_hash.as_ref().to_owned()
}

#[actix_web::test]
async fn a_django_pbkdf2_user_logs_in_and_is_rehashed_to_argon2id_keeping_its_tokens() {
    let app = spawn_app().await;
    let Some(imported) = import(&app, "imported", DJANGO_PBKDF2_SHA256) else {
        return;
    };

    let first = app.login("imported", DJANGO_PASSWORD).await;

    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["user"]["id"], imported.id.get());
    let rehashed = stored_hash(&app, "imported");
    assert!(rehashed.starts_with("$argon2id$"), "{rehashed}");
    // The same password, new format: the first token still works.
    let first_token = first.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/users/", Some(&first_token)).await.status, 200);

    let second = app.login("imported", DJANGO_PASSWORD).await;
    assert_eq!(second.status, 200, "{second:?}");
    // Rehashed once: a current hash stays as it is.
    assert_eq!(stored_hash(&app, "imported"), rehashed);
    let wrong = app.login("imported", "correct horse battery").await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
}

#[actix_web::test]
async fn an_unusable_django_password_is_refused_exactly_like_a_wrong_one() {
    let app = spawn_app().await;
    if import(&app, "inactive", DJANGO_UNUSABLE).is_none() {
        return;
    }
    import(&app, "active", DJANGO_PBKDF2_SHA256);

    let unusable = app.login("inactive", DJANGO_PASSWORD).await;
    let wrong = app.login("active", "not the password").await;
    // The hash itself as the password opens nothing either.
    let hash_as_password = app.login("inactive", DJANGO_UNUSABLE).await;

    assert_eq!(unusable.status, 401, "{unusable:?}");
    assert_eq!(unusable.body, wrong.body);
    assert_eq!(hash_as_password.status, 401);
    assert_eq!(stored_hash(&app, "inactive"), DJANGO_UNUSABLE);
}
