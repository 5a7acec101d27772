//! HS256 JSON Web Tokens (the `TokenIssuer` port).

use std::fmt;
use std::time::Duration;

use chat_domain::user::{
    AuthToken, TokenError, TokenGeneration, TokenIssuer, UserId, VerifiedToken,
};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// An HS256 key of at least 32 bytes (shorter keys are brute-forceable)
/// that is not one character repeated or only whitespace (placeholders
/// such as `xxxx...` or a line of spaces, guessed at once).
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSecretError {
    #[error("it must be at least {min} bytes long (got {actual})")]
    TooShort { min: usize, actual: usize },
    #[error("it is one character repeated or only whitespace: use a random value, e.g. `openssl rand -hex 32`")]
    Guessable,
}

impl JwtSecret {
    pub const MIN_BYTES: usize = 32;

    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, JwtSecretError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_BYTES {
            return Err(JwtSecretError::TooShort {
                min: Self::MIN_BYTES,
                actual: bytes.len(),
            });
        }
        let one_repeated = bytes.iter().all(|b| *b == bytes[0]);
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        if one_repeated || blank {
            return Err(JwtSecretError::Guessable);
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
    /// The user's token generation at issue (see `TokenGeneration`); a
    /// token from before generations existed has none and counts as 0.
    #[serde(default)]
    gen: i64,
}

/// Issues and verifies tokens; the algorithm is pinned to HS256 and `exp`
/// is required, so `alg: none` and algorithm-confusion tokens are refused.
/// A token verifies only while `exp` is strictly in the future, once its
/// `nbf` (if any) has come, if its `iat` is not in the future, and if `sub`
/// is a user id in canonical decimal (`7`, not `07` or `+7`): one user,
/// one spelling.
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
        validation.validate_nbf = true;
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
    fn issue(&self, user: UserId, generation: TokenGeneration) -> Result<AuthToken, TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
            gen: generation.0,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(AuthToken::new)
            .map_err(|e| TokenError::Issuing(e.to_string()))
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let now = jsonwebtoken::get_current_timestamp();
        // The library accepts `exp == now`; a token is dead at its `exp`.
        if data.claims.exp <= now || data.claims.iat > now {
            return Err(TokenError::Invalid);
        }
        let user = data
            .claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| id.to_string() == data.claims.sub)
            .map(UserId::new)
            .ok_or(TokenError::Invalid)?;
        let expires_at = i64::try_from(data.claims.exp)
            .ok()
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .ok_or(TokenError::Invalid)?;
        Ok(VerifiedToken {
            user,
            expires_at,
            generation: TokenGeneration(data.claims.gen),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &[u8]) -> JwtTokens {
        JwtTokens::new(&JwtSecret::new(secret).unwrap(), Duration::from_secs(3600))
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    trait IssueNow {
        fn issue_now(&self, user: UserId) -> Result<AuthToken, TokenError>;
    }

    impl IssueNow for JwtTokens {
        fn issue_now(&self, user: UserId) -> Result<AuthToken, TokenError> {
            self.issue(user, TokenGeneration(0))
        }
    }

    #[test]
    fn the_generation_travels_in_the_token_and_a_token_without_one_is_generation_0() {
        let tokens = tokens(KEY);
        let token = tokens.issue(UserId::new(5), TokenGeneration(7)).unwrap();
        assert_eq!(
            tokens.verify(token.as_ref()).unwrap().generation,
            TokenGeneration(7)
        );
        let now = jsonwebtoken::get_current_timestamp();
        let old = signed(&serde_json::json!({"sub": "5", "iat": now, "exp": now + 60}));
        assert_eq!(tokens.verify(&old).unwrap().generation, TokenGeneration(0));
    }

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let tokens = tokens(KEY);
        let token = tokens.issue_now(UserId::new(42)).unwrap();
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
            Some(JwtSecretError::TooShort { min: 32, actual: 5 })
        );
    }

    #[test]
    fn a_repeated_character_or_blank_secret_is_refused() {
        for guessable in ["x".repeat(64), " ".repeat(40), " \t\n".repeat(12)] {
            assert_eq!(
                JwtSecret::new(guessable.clone()).err(),
                Some(JwtSecretError::Guessable),
                "{guessable:?}"
            );
        }
        assert!(JwtSecret::new("xy".repeat(16)).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = tokens(b"another key that is long enough!!")
            .issue_now(UserId::new(1))
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
            gen: 0,
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(tokens(KEY).verify(&token), Err(TokenError::Invalid));
    }

    fn signed(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap()
    }

    #[test]
    fn a_token_at_its_exp_second_is_dead() {
        let now = jsonwebtoken::get_current_timestamp();
        let token = signed(&serde_json::json!({"sub": "1", "iat": now - 10, "exp": now}));
        assert_eq!(tokens(KEY).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_not_yet_valid_or_issued_in_the_future_is_refused() {
        let now = jsonwebtoken::get_current_timestamp();
        let tokens = tokens(KEY);
        let not_yet = signed(&serde_json::json!({
            "sub": "1", "iat": now, "nbf": now + 600, "exp": now + 3600
        }));
        assert_eq!(tokens.verify(&not_yet), Err(TokenError::Invalid));
        let from_the_future = signed(&serde_json::json!({
            "sub": "1", "iat": now + 600, "exp": now + 3600
        }));
        assert_eq!(tokens.verify(&from_the_future), Err(TokenError::Invalid));
        // An nbf that has come is fine.
        let valid = signed(&serde_json::json!({
            "sub": "1", "iat": now, "nbf": now - 5, "exp": now + 3600
        }));
        assert_eq!(tokens.verify(&valid).unwrap().user, UserId::new(1));
    }

    #[test]
    fn sub_must_be_a_canonical_decimal_id() {
        let now = jsonwebtoken::get_current_timestamp();
        let tokens = tokens(KEY);
        for sub in ["07", "+7", " 7", "7 ", "7.0", "0x7", "", "seven"] {
            let token = signed(&serde_json::json!({"sub": sub, "iat": now, "exp": now + 3600}));
            assert_eq!(tokens.verify(&token), Err(TokenError::Invalid), "{sub:?}");
        }
        let token = signed(&serde_json::json!({"sub": "7", "iat": now, "exp": now + 3600}));
        assert_eq!(tokens.verify(&token).unwrap().user, UserId::new(7));
    }

    #[test]
    fn a_token_with_another_algorithm_is_refused_even_with_the_right_key() {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "1".into(),
            iat: now,
            exp: now + 3600,
            gen: 0,
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
        let real = tokens.issue_now(UserId::new(1)).unwrap();
        let payload = real.as_ref().split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(tokens.verify(&forged), Err(TokenError::Invalid));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let tokens = tokens(KEY);
        let real = tokens.issue_now(UserId::new(1)).unwrap();
        let mut parts: Vec<String> = real.as_ref().split('.').map(str::to_owned).collect();
        let other = tokens.issue_now(UserId::new(2)).unwrap();
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
