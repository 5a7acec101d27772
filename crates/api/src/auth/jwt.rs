//! HS256 JSON Web Tokens (the `TokenIssuer` port).

use std::fmt;
use std::time::Duration;

use chat_domain::user::{AuthToken, TokenError, TokenIssuer, UserId, VerifiedToken};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// An HS256 key of at least 32 bytes (shorter keys are brute-forceable).
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least {min} bytes long (got {actual})")]
pub struct JwtSecretError {
    pub min: usize,
    pub actual: usize,
}

impl JwtSecret {
    pub const MIN_BYTES: usize = 32;

    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, JwtSecretError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_BYTES {
            return Err(JwtSecretError {
                min: Self::MIN_BYTES,
                actual: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as a string per RFC 7519.
    sub: String,
    iat: u64,
    exp: u64,
}

/// Issues and verifies tokens; the algorithm is pinned to HS256 and `exp`
/// is required, so `alg: none` and algorithm-confusion tokens are refused.
pub struct JwtTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtTokens {
    pub fn new(secret: &JwtSecret, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(&secret.0),
            decoding: DecodingKey::from_secret(&secret.0),
            validation,
            ttl,
        }
    }
}

impl TokenIssuer for JwtTokens {
    fn issue(&self, user: UserId) -> Result<AuthToken, TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(AuthToken::new)
            .map_err(|e| TokenError::Issuing(e.to_string()))
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let user = data
            .claims
            .sub
            .parse::<i64>()
            .map(UserId::new)
            .map_err(|_| TokenError::Invalid)?;
        let expires_at = i64::try_from(data.claims.exp)
            .ok()
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .ok_or(TokenError::Invalid)?;
        Ok(VerifiedToken { user, expires_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &[u8]) -> JwtTokens {
        JwtTokens::new(&JwtSecret::new(secret).unwrap(), Duration::from_secs(3600))
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let tokens = tokens(KEY);
        let token = tokens.issue(UserId::new(42)).unwrap();
        let verified = tokens.verify(token.as_ref()).unwrap();
        assert_eq!(verified.user, UserId::new(42));
        // The lifetime given, to the second.
        let lifetime = verified.expires_at - chrono::Utc::now();
        assert!(
            (3598..=3600).contains(&lifetime.num_seconds()),
            "{lifetime}"
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(
            JwtSecret::new(b"short".to_vec()).err(),
            Some(JwtSecretError { min: 32, actual: 5 })
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = tokens(b"another key that is long enough!!")
            .issue(UserId::new(1))
            .unwrap();
        assert_eq!(tokens(KEY).verify(token.as_ref()), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "1".into(),
            iat: now - 100,
            exp: now - 10,
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(tokens(KEY).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_with_another_algorithm_is_refused_even_with_the_right_key() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "1".into(),
            iat: now,
            exp: now + 3600,
        };
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = encode(
                &Header::new(algorithm),
                &claims,
                &EncodingKey::from_secret(KEY),
            )
            .unwrap();
            assert_eq!(
                tokens(KEY).verify(&token),
                Err(TokenError::Invalid),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let token = encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "1".into() },
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(tokens(KEY).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let tokens = tokens(KEY);
        let real = tokens.issue(UserId::new(1)).unwrap();
        let payload = real.as_ref().split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(tokens.verify(&forged), Err(TokenError::Invalid));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let tokens = tokens(KEY);
        let real = tokens.issue(UserId::new(1)).unwrap();
        let mut parts: Vec<String> = real.as_ref().split('.').map(str::to_owned).collect();
        let other = tokens.issue(UserId::new(2)).unwrap();
        parts[1] = other.as_ref().split('.').nth(1).unwrap().to_owned();
        // Signature of user 1's token over user 2's claims: must fail.
        assert_eq!(tokens.verify(&parts.join(".")), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_refused() {
        let tokens = tokens(KEY);
        for garbage in ["", "abc", "a.b.c", "....", "eyJ.eyJ.eyJ"] {
            assert_eq!(
                tokens.verify(garbage),
                Err(TokenError::Invalid),
                "{garbage:?}"
            );
        }
    }
}
