//! Accounts (`UserRepository`). `last_seen` is read back through chat
//! summaries; see `chats.rs`.

use chat_domain::user::{
    CreateUserError, NewUser, PasswordHash, TokenGeneration, UserId, Username,
};

use crate::stores::{Store, StoreExt as _};

contract_tests!(
    a_new_user_gets_an_id_and_keeps_its_username,
    a_taken_username_is_a_duplicate,
    credentials_are_found_by_username_in_any_case_or_width,
    a_username_that_differs_only_in_case_or_width_is_a_duplicate,
    a_password_change_stores_the_hash_and_moves_the_token_generation_on,
    revoking_tokens_moves_the_generation_on_and_nothing_else,
    replacing_a_hash_keeps_the_token_generation_and_touches_no_one_else,
    a_hash_is_replaced_only_while_it_is_still_the_old_one,
    replacing_the_hash_of_an_unknown_user_replaces_nothing,
    an_unknown_user_is_not_found,
    users_are_listed_by_id_without_the_viewer,
    a_search_matches_part_of_a_username_ignoring_ascii_case,
    a_search_takes_like_wildcards_literally_and_stops_at_its_limit,
);

fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn a_new_user_gets_an_id_and_keeps_its_username(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");

    assert_eq!(alice.username.as_ref(), "alice");
    assert!(bob.id > alice.id);
    assert_eq!(store.find_user(alice.id).unwrap(), Some(alice));
}

fn a_taken_username_is_a_duplicate(store: &dyn Store) {
    store.user("alice");

    let again = store.create_user(&NewUser {
        username: username("alice"),
        password_hash: PasswordHash::new("$argon2id$other"),
    });

    assert!(
        matches!(again, Err(CreateUserError::Duplicate)),
        "{again:?}"
    );
}

fn credentials_are_found_by_username_in_any_case_or_width(store: &dyn Store) {
    let alice = store.user("alice");

    let found = store.find_credentials(&username("alice")).unwrap().unwrap();
    assert_eq!(found.user, alice);
    assert_eq!(
        found.password_hash.as_ref(),
        "$argon2id$v=19$fake-hash-of-alice"
    );
    assert_eq!(found.token_generation, TokenGeneration(0));
    for spelling in ["Alice", "ALICE", "ａｌｉｃｅ"] {
        let found = store.find_credentials(&username(spelling)).unwrap();
        assert_eq!(found.map(|c| c.user), Some(alice.clone()), "{spelling}");
    }
    assert_eq!(store.find_credentials(&username("ali")).unwrap(), None);
}

fn a_username_that_differs_only_in_case_or_width_is_a_duplicate(store: &dyn Store) {
    store.user("alice");
    for name in ["Alice", "ALICE", "ａｌｉｃｅ"] {
        let again = store.create_user(&NewUser {
            username: username(name),
            password_hash: PasswordHash::new("$argon2id$other"),
        });
        assert!(
            matches!(again, Err(CreateUserError::Duplicate)),
            "{name}: {again:?}"
        );
    }
}

fn a_password_change_stores_the_hash_and_moves_the_token_generation_on(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");

    let generation = store
        .set_password(alice.id, &PasswordHash::new("$argon2id$new"))
        .unwrap();

    assert_eq!(generation, TokenGeneration(1));
    let found = store.find_credentials(&username("alice")).unwrap().unwrap();
    assert_eq!(found.password_hash.as_ref(), "$argon2id$new");
    assert_eq!(found.token_generation, TokenGeneration(1));
    assert_eq!(
        store.find_user_with_generation(alice.id).unwrap(),
        Some((alice.clone(), TokenGeneration(1)))
    );
    // Nobody else's.
    assert_eq!(
        store.find_user_with_generation(bob.id).unwrap(),
        Some((bob, TokenGeneration(0)))
    );
    assert_eq!(
        store
            .set_password(alice.id, &PasswordHash::new("$argon2id$newer"))
            .unwrap(),
        TokenGeneration(2)
    );
}

fn revoking_tokens_moves_the_generation_on_and_nothing_else(store: &dyn Store) {
    let alice = store.user("alice");

    assert_eq!(store.revoke_tokens(alice.id).unwrap(), TokenGeneration(1));
    assert_eq!(store.revoke_tokens(alice.id).unwrap(), TokenGeneration(2));

    let found = store.find_credentials(&username("alice")).unwrap().unwrap();
    assert_eq!(
        found.password_hash.as_ref(),
        "$argon2id$v=19$fake-hash-of-alice"
    );
    assert_eq!(found.token_generation, TokenGeneration(2));
    assert_eq!(
        store.find_user_with_generation(UserId::new(999)).unwrap(),
        None
    );
}

const DJANGO_HASH: &str = "pbkdf2_sha256$870000$salt$aGFzaA==";

fn replacing_a_hash_keeps_the_token_generation_and_touches_no_one_else(store: &dyn Store) {
    let alice = store.user("alice");
    let bob = store.user("bob");
    store.revoke_tokens(alice.id).unwrap();
    let old = PasswordHash::new("$argon2id$v=19$fake-hash-of-alice");

    let replaced = store
        .replace_password_hash(alice.id, &old, &PasswordHash::new("$argon2id$rehashed"))
        .unwrap();

    assert!(replaced);
    let found = store.find_credentials(&username("alice")).unwrap().unwrap();
    assert_eq!(found.password_hash.as_ref(), "$argon2id$rehashed");
    // Not a password change: the tokens issued so far stay valid.
    assert_eq!(found.token_generation, TokenGeneration(1));
    let bobs = store.find_credentials(&username("bob")).unwrap().unwrap();
    assert_eq!(bobs.user, bob);
    assert_eq!(
        bobs.password_hash.as_ref(),
        "$argon2id$v=19$fake-hash-of-bob"
    );
    assert_eq!(bobs.token_generation, TokenGeneration(0));
}

fn a_hash_is_replaced_only_while_it_is_still_the_old_one(store: &dyn Store) {
    let imported = store
        .create_user(&NewUser {
            username: username("imported"),
            password_hash: PasswordHash::new(DJANGO_HASH),
        })
        .unwrap();
    // A password change lands between the login's read and its rehash.
    store
        .set_password(imported.id, &PasswordHash::new("$argon2id$changed"))
        .unwrap();

    let replaced = store
        .replace_password_hash(
            imported.id,
            &PasswordHash::new(DJANGO_HASH),
            &PasswordHash::new("$argon2id$rehash-of-the-old-password"),
        )
        .unwrap();

    assert!(!replaced);
    let found = store
        .find_credentials(&username("imported"))
        .unwrap()
        .unwrap();
    assert_eq!(found.password_hash.as_ref(), "$argon2id$changed");
    assert_eq!(found.token_generation, TokenGeneration(1));
}

fn replacing_the_hash_of_an_unknown_user_replaces_nothing(store: &dyn Store) {
    let old = PasswordHash::new("$argon2id$v=19$fake-hash-of-alice");
    let replaced = store
        .replace_password_hash(UserId::new(999), &old, &PasswordHash::new("$argon2id$x"))
        .unwrap();
    assert!(!replaced);
}

fn an_unknown_user_is_not_found(store: &dyn Store) {
    assert_eq!(store.find_user(UserId::new(42)).unwrap(), None);
}

fn users_are_listed_by_id_without_the_viewer(store: &dyn Store) {
    let zed = store.user("zed");
    let amy = store.user("amy");
    let max = store.user("max");

    let listed = store.list_users_except(amy.id).unwrap();

    assert_eq!(listed, vec![zed, max]);
}

fn a_search_matches_part_of_a_username_ignoring_ascii_case(store: &dyn Store) {
    let me = store.user("Alina");
    let malice = store.user("malice");
    let alex = store.user("ALEX");
    store.user("bob");

    let found = store.search_users(me.id, "al", 10).unwrap();
    assert_eq!(found, vec![alex, malice.clone()], "by username, not me");
    assert_eq!(store.search_users(me.id, "LIC", 10).unwrap(), vec![malice]);
    assert_eq!(store.search_users(me.id, "zed", 10).unwrap(), vec![]);
    assert_eq!(store.search_users(me.id, "", 10).unwrap().len(), 3);
}

fn a_search_takes_like_wildcards_literally_and_stops_at_its_limit(store: &dyn Store) {
    let me = store.user("me");
    let under = store.user("a_b");
    store.user("axb");
    for i in 0..5 {
        store.user(&format!("u{i}"));
    }

    assert_eq!(store.search_users(me.id, "a_b", 10).unwrap(), vec![under]);
    assert_eq!(store.search_users(me.id, "%", 10).unwrap(), vec![]);
    let two = store.search_users(me.id, "u", 2).unwrap();
    let names: Vec<&str> = two.iter().map(|u| u.username.as_ref()).collect();
    assert_eq!(names, ["u0", "u1"]);
}
