//! What the user services need from the outside world.

use super::models::{
    AuthToken, NewUser, Password, PasswordHash, StoredCredentials, TokenGeneration, User, UserId,
    Username,
};
use crate::error::{BoxError, RepositoryError};
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The username is already taken (the store's unique constraint fired).
    #[error("username already taken")]
    Duplicate,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Storage of accounts. Implementations are blocking; callers run them off
/// the async executor.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait UserRepository: Send + Sync + 'static {
    /// Fails with `Duplicate` when another account has the same
    /// [`Username::key`].
    fn create_user(&self, new_user: &NewUser) -> Result<User, CreateUserError>;

    /// The account named exactly `username`, else the one whose key is
    /// `username`'s key (`ALICE` finds `alice`).
    fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<StoredCredentials>, RepositoryError>;

    fn find_user(&self, id: UserId) -> Result<Option<User>, RepositoryError>;

    /// The user and the generation their valid tokens carry, in one read
    /// (every authenticated request makes it).
    fn find_user_with_generation(
        &self,
        id: UserId,
    ) -> Result<Option<(User, TokenGeneration)>, RepositoryError>;

    /// Stores a new password hash and moves the token generation on, in
    /// one statement; returns the new generation.
    fn set_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
    ) -> Result<TokenGeneration, RepositoryError>;

    /// Replaces `id`'s password hash with `new` if it is still `old`
    /// (compare-and-set), and leaves the token generation alone: the same
    /// password stored in a better format is no password change, so no
    /// token is revoked. Returns whether it replaced; `false` when the hash
    /// changed meanwhile (a concurrent password change wins) or the user is
    /// gone.
    fn replace_password_hash(
        &self,
        id: UserId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, RepositoryError>;

    /// Moves the token generation on (every token issued so far stops
    /// working); returns the new generation.
    fn revoke_tokens(&self, id: UserId) -> Result<TokenGeneration, RepositoryError>;

    /// Every user but `id`, ordered by id.
    fn list_users_except(&self, id: UserId) -> Result<Vec<User>, RepositoryError>;

    /// At most `limit` users but `except` whose username contains `needle`,
    /// ignoring the case of ASCII letters, ordered by username in lower case
    /// (then by id). An empty
    /// needle matches everyone.
    fn search_users(
        &self,
        except: UserId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<User>, RepositoryError>;

    /// Records when `id` was last seen online (when they go offline).
    fn set_last_seen(&self, id: UserId, at: DateTime<Utc>) -> Result<(), RepositoryError>;
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashingError(#[source] pub BoxError);

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is right and the hash is in the current format.
    Matches,
    /// The password is right, but the hash is in an older format (one
    /// imported from Django, or other parameters): a fresh
    /// [`PasswordHasher::hash`] of it should replace the stored one.
    MatchesOutdated,
    /// The hash is one this hasher checks, and the password is not the one.
    Wrong,
    /// No password can match this hash, and checking it cost (almost)
    /// nothing: an unusable password (a `!` prefix, what Django's
    /// `make_password(None)` stores, and what an import stores for
    /// inactive accounts), a format not recognised, a malformed hash, or
    /// one asking more work than the hasher allows. Callers run
    /// [`PasswordHasher::verify_decoy`] so that this takes as long as a
    /// wrong password.
    Unusable,
}

impl PasswordCheck {
    /// The password opened the account (whatever the hash's format).
    pub fn is_match(self) -> bool {
        matches!(self, Self::Matches | Self::MatchesOutdated)
    }
}

/// A slow, salted password hash (Argon2id in production).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait PasswordHasher: Send + Sync + 'static {
    /// A hash in the current format.
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError>;

    /// Whether `candidate` matches `hash`, and whether `hash` should be
    /// replaced by a current one.
    fn verify(&self, candidate: &str, hash: &PasswordHash) -> PasswordCheck;

    /// Does the same work as [`verify`](Self::verify) against a hash no
    /// password matches. Login calls it for unknown users and unusable
    /// hashes so that response times do not reveal which usernames exist
    /// or which accounts cannot log in.
    fn verify_decoy(&self, candidate: &str);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is invalid or expired")]
    Invalid,
    #[error("could not issue a token: {0}")]
    Issuing(String),
}

/// A token that checked out: whose it is and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user: UserId,
    pub expires_at: DateTime<Utc>,
    pub generation: TokenGeneration,
}

/// Issues and checks bearer tokens (HS256 JWTs in production).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait TokenIssuer: Send + Sync + 'static {
    fn issue(&self, user: UserId, generation: TokenGeneration) -> Result<AuthToken, TokenError>;

    /// The user a genuine, unexpired token was issued to, and when it
    /// expires.
    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError>;
}
