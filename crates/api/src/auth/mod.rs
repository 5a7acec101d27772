//! Authentication adapters: Argon2id password hashing, HS256 JWTs, and the
//! extractor that turns a bearer token into the calling user.

pub mod extractor;
pub mod jwt;
pub mod password;
pub mod revocations;
pub mod throttle;

pub use extractor::{bearer_token, query_token, CurrentUser};
pub use jwt::{JwtSecret, JwtSecretError, JwtTokens};
pub use password::Argon2Hasher;
pub use revocations::{Revocations, Revoked};
pub use throttle::LoginThrottle;
