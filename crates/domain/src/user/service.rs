//! Registration, login and authentication.

use std::sync::Arc;

use super::models::{
    AuthToken, NewUser, Password, StoredCredentials, TokenGeneration, User, UserId, Username,
};
use super::ports::{
    CreateUserError, HashingError, PasswordCheck, PasswordHasher, TokenError, TokenIssuer,
    UserRepository,
};
use crate::error::RepositoryError;
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("a user with that username already exists")]
    UsernameTaken,
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// One variant for unknown user and wrong password alike: callers must
    /// not be able to tell which usernames exist.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// Malformed, forged, expired, revoked (issued before the user's last
    /// password change or logout), or issued to a user that no longer
    /// exists.
    #[error("invalid or expired token")]
    InvalidToken,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    #[error("the current password is not correct")]
    WrongPassword,
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// An authenticated token: whose it is, until when, and the generation it
/// was issued at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user: User,
    pub expires_at: DateTime<Utc>,
    pub generation: TokenGeneration,
}

/// A successful login: the token to present from now on, and who it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSuccess {
    pub token: AuthToken,
    pub user: User,
}

/// Accounts and tokens. Every method blocks (hashing, storage): call it from
/// a blocking thread.
#[derive(Clone)]
pub struct AuthService {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenIssuer>,
}

impl AuthService {
    pub fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenIssuer>,
    ) -> Self {
        Self {
            users,
            hasher,
            tokens,
        }
    }

    pub fn register(&self, username: Username, password: &Password) -> Result<User, RegisterError> {
        let password_hash = self.hasher.hash(password)?;
        let new_user = NewUser {
            username,
            password_hash,
        };
        self.users.create_user(&new_user).map_err(|e| match e {
            CreateUserError::Duplicate => RegisterError::UsernameTaken,
            CreateUserError::Repository(e) => RegisterError::Repository(e),
        })
    }

    pub fn login(&self, username: &str, password: &str) -> Result<LoginSuccess, LoginError> {
        let credentials = match Username::parse(username) {
            Ok(username) => self.users.find_credentials(&username)?,
            Err(_) => None,
        };
        let Some(credentials) = credentials else {
            // A hash is checked even when there is no such user, so both
            // failures cost the same time.
            self.hasher.verify_decoy(password);
            return Err(LoginError::InvalidCredentials);
        };
        match self.hasher.verify(password, &credentials.password_hash) {
            PasswordCheck::Matches => {}
            PasswordCheck::MatchesOutdated => self.rehash(&credentials, password),
            PasswordCheck::Wrong => return Err(LoginError::InvalidCredentials),
            PasswordCheck::Unusable => {
                // Checking an unusable hash cost nothing: the decoy makes
                // it cost what a wrong password does, so the answer's time
                // does not tell which accounts cannot log in.
                self.hasher.verify_decoy(password);
                return Err(LoginError::InvalidCredentials);
            }
        }
        let token = self
            .tokens
            .issue(credentials.user.id, credentials.token_generation)
            .map_err(LoginError::Token)?;
        Ok(LoginSuccess {
            token,
            user: credentials.user,
        })
    }

    /// Replaces an outdated hash (from Django, or other parameters) with a
    /// current one of the password that just matched it. The login has
    /// succeeded already: a failure here is logged and the old hash stays,
    /// to be replaced at a later login. Compare-and-set, and the token
    /// generation stays: a password change meanwhile wins, and no token is
    /// revoked by a mere change of format.
    fn rehash(&self, credentials: &StoredCredentials, password: &str) {
        let user = credentials.user.id;
        let new = match self.hasher.hash(&Password::already_accepted(password)) {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "could not rehash an outdated password hash");
                return;
            }
        };
        match self
            .users
            .replace_password_hash(user, &credentials.password_hash, &new)
        {
            Ok(true) => tracing::info!(user_id = %user, "outdated password hash replaced"),
            Ok(false) => tracing::info!(
                user_id = %user,
                "password hash changed meanwhile; the outdated one was not replaced"
            ),
            Err(e) => {
                tracing::warn!(user_id = %user, error = %e, "could not store a rehashed password");
            }
        }
    }

    /// The user a bearer token stands for, who must still exist.
    pub fn authenticate(&self, token: &str) -> Result<User, AuthenticateError> {
        self.authenticate_session(token).map(|session| session.user)
    }

    /// Like [`authenticate`](Self::authenticate), with when the token
    /// expires and the generation it was issued at, which a socket watches
    /// for revocation.
    pub fn authenticate_session(&self, token: &str) -> Result<SignedIn, AuthenticateError> {
        let verified = self
            .tokens
            .verify(token)
            .map_err(|_| AuthenticateError::InvalidToken)?;
        let (user, generation) = self
            .users
            .find_user_with_generation(verified.user)?
            .ok_or(AuthenticateError::InvalidToken)?;
        // A token from before the last password change or logout.
        if verified.generation != generation {
            return Err(AuthenticateError::InvalidToken);
        }
        Ok(SignedIn {
            user,
            expires_at: verified.expires_at,
            generation,
        })
    }

    /// Changes `user`'s password once `current` is theirs; every token
    /// issued before stops working, and a fresh one is returned so the
    /// caller stays signed in on this device.
    pub fn change_password(
        &self,
        user: &User,
        current: &str,
        new: &Password,
    ) -> Result<(LoginSuccess, TokenGeneration), ChangePasswordError> {
        let credentials = self
            .users
            .find_credentials(&user.username)?
            .filter(|c| c.user.id == user.id)
            .ok_or(ChangePasswordError::WrongPassword)?;
        match self.hasher.verify(current, &credentials.password_hash) {
            // An outdated hash is replaced by the new password's anyway.
            PasswordCheck::Matches | PasswordCheck::MatchesOutdated => {}
            PasswordCheck::Wrong => return Err(ChangePasswordError::WrongPassword),
            PasswordCheck::Unusable => {
                self.hasher.verify_decoy(current);
                return Err(ChangePasswordError::WrongPassword);
            }
        }
        let hash = self.hasher.hash(new)?;
        let generation = self.users.set_password(user.id, &hash)?;
        let token = self
            .tokens
            .issue(user.id, generation)
            .map_err(ChangePasswordError::Token)?;
        let success = LoginSuccess {
            token,
            user: credentials.user,
        };
        Ok((success, generation))
    }

    /// Revokes every token of `user` (on every device); returns the new
    /// generation.
    pub fn log_out(&self, user: UserId) -> Result<TokenGeneration, RepositoryError> {
        self.users.revoke_tokens(user)
    }

    /// The generation `user`'s valid tokens carry now (`None`: the user is
    /// gone), for a socket that may have missed a revocation.
    pub fn current_generation(
        &self,
        user: UserId,
    ) -> Result<Option<TokenGeneration>, RepositoryError> {
        Ok(self
            .users
            .find_user_with_generation(user)?
            .map(|(_, generation)| generation))
    }

    /// Everyone but `me`, ordered by id.
    pub fn list_other_users(&self, me: UserId) -> Result<Vec<User>, RepositoryError> {
        self.users.list_users_except(me)
    }

    /// At most `limit` others whose username contains `needle` (ASCII case
    /// ignored), ordered by username: the people picker of a client.
    pub fn search_other_users(
        &self,
        me: UserId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<User>, RepositoryError> {
        self.users.search_users(me, needle, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::models::{PasswordHash, StoredCredentials};
    use crate::user::ports::{
        MockPasswordHasher, MockTokenIssuer, MockUserRepository, PasswordCheck, VerifiedToken,
    };
    use mockall::predicate::eq;

    fn alice() -> User {
        User {
            id: UserId::new(1),
            username: Username::parse("alice").unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn service(
        users: MockUserRepository,
        hasher: MockPasswordHasher,
        tokens: MockTokenIssuer,
    ) -> AuthService {
        AuthService::new(Arc::new(users), Arc::new(hasher), Arc::new(tokens))
    }

    fn verified(user: i64) -> VerifiedToken {
        VerifiedToken {
            user: UserId::new(user),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            generation: TokenGeneration(0),
        }
    }

    fn password(raw: &str) -> Password {
        Password::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn registering_stores_the_hash_never_the_password() {
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$fake")));
        let mut users = MockUserRepository::new();
        users
            .expect_create_user()
            .withf(|new_user| {
                new_user.password_hash.as_ref() == "$argon2id$fake"
                    && new_user.username.as_ref() == "alice"
            })
            .returning(|_| Ok(alice()));
        let service = service(users, hasher, MockTokenIssuer::new());

        let user = service.register(alice().username, &password("correct horse"));

        assert_eq!(user.ok(), Some(alice()));
    }

    #[test]
    fn registering_a_taken_username_is_reported_as_such() {
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$fake")));
        let mut users = MockUserRepository::new();
        users
            .expect_create_user()
            .returning(|_| Err(CreateUserError::Duplicate));
        let service = service(users, hasher, MockTokenIssuer::new());

        let result = service.register(alice().username, &password("correct horse"));

        assert!(matches!(result, Err(RegisterError::UsernameTaken)));
    }

    #[test]
    fn login_with_the_right_password_issues_a_token() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| {
            Ok(Some(StoredCredentials {
                user: alice(),
                password_hash: PasswordHash::new("h"),
                token_generation: TokenGeneration(3),
            }))
        });
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .withf(|candidate, hash| candidate == "correct horse" && hash.as_ref() == "h")
            .return_const(PasswordCheck::Matches);
        // A current hash is left as it is.
        hasher.expect_hash().never();
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_issue()
            .with(eq(UserId::new(1)), eq(TokenGeneration(3)))
            .returning(|_, _| Ok(AuthToken::new("t")));
        let service = service(users, hasher, tokens);

        let success = service.login("alice", "correct horse");

        assert_eq!(
            success.ok(),
            Some(LoginSuccess {
                token: AuthToken::new("t"),
                user: alice()
            })
        );
    }

    #[test]
    fn login_with_a_wrong_password_is_refused() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| {
            Ok(Some(StoredCredentials {
                user: alice(),
                password_hash: PasswordHash::new("h"),
                token_generation: TokenGeneration(3),
            }))
        });
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().return_const(PasswordCheck::Wrong);
        // The hash's own work was the cost; no decoy on top.
        hasher.expect_verify_decoy().never();
        let service = service(users, hasher, MockTokenIssuer::new());

        let result = service.login("alice", "wrong password");

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[test]
    fn login_as_an_unknown_user_still_checks_a_hash_and_fails_the_same_way() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| Ok(None));
        let mut hasher = MockPasswordHasher::new();
        // Exactly one verification, against the decoy.
        hasher.expect_verify_decoy().times(1).return_const(());
        let service = service(users, hasher, MockTokenIssuer::new());

        let result = service.login("nobody", "whatever1");

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[test]
    fn login_with_an_impossible_username_does_the_decoy_work_too() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify_decoy().times(1).return_const(());
        // The repository is never asked: the name cannot exist.
        let service = service(MockUserRepository::new(), hasher, MockTokenIssuer::new());

        let result = service.login("not a valid name!", "whatever1");

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[test]
    fn a_valid_token_authenticates_its_user() {
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_verify().returning(|_| Ok(verified(1)));
        let mut users = MockUserRepository::new();
        users
            .expect_find_user_with_generation()
            .with(eq(UserId::new(1)))
            .returning(|_| Ok(Some((alice(), TokenGeneration(0)))));
        let service = service(users, MockPasswordHasher::new(), tokens);

        assert_eq!(service.authenticate("t").ok(), Some(alice()));
    }

    #[test]
    fn a_forged_token_is_refused() {
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_verify()
            .returning(|_| Err(TokenError::Invalid));
        let service = service(MockUserRepository::new(), MockPasswordHasher::new(), tokens);

        assert!(matches!(
            service.authenticate("forged"),
            Err(AuthenticateError::InvalidToken)
        ));
    }

    #[test]
    fn a_token_for_a_user_that_no_longer_exists_is_refused() {
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_verify().returning(|_| Ok(verified(99)));
        let mut users = MockUserRepository::new();
        users
            .expect_find_user_with_generation()
            .returning(|_| Ok(None));
        let service = service(users, MockPasswordHasher::new(), tokens);

        assert!(matches!(
            service.authenticate("t"),
            Err(AuthenticateError::InvalidToken)
        ));
    }

    #[test]
    fn a_token_from_before_the_last_revocation_is_refused() {
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_verify().returning(|_| Ok(verified(1)));
        let mut users = MockUserRepository::new();
        users
            .expect_find_user_with_generation()
            .returning(|_| Ok(Some((alice(), TokenGeneration(1)))));
        let service = service(users, MockPasswordHasher::new(), tokens);

        assert!(matches!(
            service.authenticate("t"),
            Err(AuthenticateError::InvalidToken)
        ));
    }

    fn alices_credentials() -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| {
            Ok(Some(StoredCredentials {
                user: alice(),
                password_hash: PasswordHash::new("old-hash"),
                token_generation: TokenGeneration(0),
            }))
        });
        users
    }

    #[test]
    fn changing_the_password_stores_the_new_hash_and_issues_a_token_of_the_new_generation() {
        let mut users = alices_credentials();
        users
            .expect_set_password()
            .withf(|id, hash| *id == UserId::new(1) && hash.as_ref() == "new-hash")
            .times(1)
            .returning(|_, _| Ok(TokenGeneration(1)));
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .withf(|candidate, hash| candidate == "old password" && hash.as_ref() == "old-hash")
            .return_const(PasswordCheck::Matches);
        hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("new-hash")));
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_issue()
            .with(eq(UserId::new(1)), eq(TokenGeneration(1)))
            .returning(|_, _| Ok(AuthToken::new("fresh")));
        let service = service(users, hasher, tokens);

        let changed = service.change_password(&alice(), "old password", &password("new password"));

        let (success, generation) = changed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(success.token, AuthToken::new("fresh"));
        assert_eq!(generation, TokenGeneration(1));
    }

    #[test]
    fn a_wrong_current_password_changes_nothing() {
        let mut users = alices_credentials();
        users.expect_set_password().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().return_const(PasswordCheck::Wrong);
        hasher.expect_hash().never();
        let service = service(users, hasher, MockTokenIssuer::new());

        let changed = service.change_password(&alice(), "guess", &password("new password"));

        assert!(matches!(changed, Err(ChangePasswordError::WrongPassword)));
    }

    const DJANGO_HASH: &str = "pbkdf2_sha256$870000$salt$aGFzaA==";

    /// Alice, whose stored hash came from Django.
    fn imported_alice() -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials().returning(|_| {
            Ok(Some(StoredCredentials {
                user: alice(),
                password_hash: PasswordHash::new(DJANGO_HASH),
                token_generation: TokenGeneration(3),
            }))
        });
        users
    }

    fn outdated_match_then_rehash() -> MockPasswordHasher {
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .withf(|candidate, hash| candidate == "short" && hash.as_ref() == DJANGO_HASH)
            .times(1)
            .return_const(PasswordCheck::MatchesOutdated);
        hasher
            .expect_hash()
            // Shorter than the policy allows for new passwords: an old
            // account's password is rehashed all the same.
            .withf(|password| password.as_ref() == "short")
            .times(1)
            .returning(|_| Ok(PasswordHash::new("$argon2id$fresh")));
        hasher
    }

    fn token_of_generation_3() -> MockTokenIssuer {
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_issue()
            .with(eq(UserId::new(1)), eq(TokenGeneration(3)))
            .times(1)
            .returning(|_, _| Ok(AuthToken::new("t")));
        tokens
    }

    #[test]
    fn a_login_with_an_outdated_hash_replaces_it_once_and_revokes_nothing() {
        let mut users = imported_alice();
        users
            .expect_replace_password_hash()
            .withf(|id, old, new| {
                *id == UserId::new(1)
                    && old.as_ref() == DJANGO_HASH
                    && new.as_ref() == "$argon2id$fresh"
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        // Not a password change: the generation stays, tokens stay valid.
        users.expect_set_password().never();
        users.expect_revoke_tokens().never();
        let service = service(users, outdated_match_then_rehash(), token_of_generation_3());

        let success = service.login("alice", "short");

        assert_eq!(success.map(|s| s.token).ok(), Some(AuthToken::new("t")));
    }

    #[test]
    fn a_failed_rehash_still_logs_in() {
        let mut users = imported_alice();
        users
            .expect_replace_password_hash()
            .times(1)
            .returning(|_, _, _| Err(RepositoryError::unavailable("database down")));
        let service = service(users, outdated_match_then_rehash(), token_of_generation_3());

        let success = service.login("alice", "short");

        assert_eq!(success.map(|s| s.user).ok(), Some(alice()));
    }

    #[test]
    fn a_rehash_lost_to_a_concurrent_password_change_still_logs_in() {
        let mut users = imported_alice();
        users
            .expect_replace_password_hash()
            .times(1)
            .returning(|_, _, _| Ok(false));
        let service = service(users, outdated_match_then_rehash(), token_of_generation_3());

        assert!(service.login("alice", "short").is_ok());
    }

    #[test]
    fn a_hashing_failure_during_the_rehash_still_logs_in_and_stores_nothing() {
        let mut users = imported_alice();
        users.expect_replace_password_hash().never();
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .return_const(PasswordCheck::MatchesOutdated);
        hasher
            .expect_hash()
            .times(1)
            .returning(|_| Err(HashingError("out of memory".into())));
        let service = service(users, hasher, token_of_generation_3());

        assert!(service.login("alice", "short").is_ok());
    }

    #[test]
    fn an_unusable_hash_does_the_decoy_work_and_fails_like_a_wrong_password() {
        let mut users = imported_alice();
        users.expect_replace_password_hash().never();
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .times(1)
            .return_const(PasswordCheck::Unusable);
        hasher
            .expect_verify_decoy()
            .withf(|candidate| candidate == "whatever1")
            .times(1)
            .return_const(());
        hasher.expect_hash().never();
        let service = service(users, hasher, MockTokenIssuer::new());

        let result = service.login("alice", "whatever1");

        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    }

    #[test]
    fn an_unusable_hash_refuses_a_password_change_after_the_decoy_work() {
        let mut users = alices_credentials();
        users.expect_set_password().never();
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().return_const(PasswordCheck::Unusable);
        hasher.expect_verify_decoy().times(1).return_const(());
        hasher.expect_hash().never();
        let service = service(users, hasher, MockTokenIssuer::new());

        let changed = service.change_password(&alice(), "anything", &password("new password"));

        assert!(matches!(changed, Err(ChangePasswordError::WrongPassword)));
    }

    #[test]
    fn a_password_change_from_an_outdated_hash_stores_only_the_new_password() {
        let mut users = alices_credentials();
        users.expect_replace_password_hash().never();
        users
            .expect_set_password()
            .withf(|_, hash| hash.as_ref() == "new-hash")
            .times(1)
            .returning(|_, _| Ok(TokenGeneration(1)));
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_verify()
            .return_const(PasswordCheck::MatchesOutdated);
        hasher
            .expect_hash()
            .withf(|p| p.as_ref() == "new password")
            .times(1)
            .returning(|_| Ok(PasswordHash::new("new-hash")));
        let mut tokens = MockTokenIssuer::new();
        tokens
            .expect_issue()
            .returning(|_, _| Ok(AuthToken::new("fresh")));
        let service = service(users, hasher, tokens);

        let changed = service.change_password(&alice(), "old password", &password("new password"));

        assert!(changed.is_ok());
    }
}
