//! Argon2id password hashing (the `PasswordHasher` port).

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::Argon2;
use chat_domain::user::{HashingError, Password, PasswordHash, PasswordHasher};

/// Argon2id with the crate's recommended parameters (19 MiB, 2 passes).
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    /// A real hash of a random password, checked on logins for unknown
    /// users so they take as long as logins with a wrong password.
    decoy: String,
}

impl Argon2Hasher {
    pub fn new() -> Result<Self, HashingError> {
        let argon2 = Argon2::default();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| HashingError(e.to_string().into()))?;
        let decoy = argon2
            .hash_password(&secret)
            .map_err(|e| HashingError(e.to_string().into()))?
            .to_string();
        Ok(Self { argon2, decoy })
    }
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError> {
        let hash = self
            .argon2
            .hash_password(password.as_ref().as_bytes())
            .map_err(|e| HashingError(e.to_string().into()))?;
        Ok(PasswordHash::new(hash.to_string()))
    }

    fn verify(&self, candidate: &str, hash: &PasswordHash) -> bool {
        self.argon2
            .verify_password(candidate.as_bytes(), hash.as_ref())
            .is_ok()
    }

    fn verify_decoy(&self, candidate: &str) {
        // The result is meaningless; only the work matters.
        let _ = self
            .argon2
            .verify_password(candidate.as_bytes(), self.decoy.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hasher = Argon2Hasher::new().unwrap();
        let hash = hasher
            .hash(&Password::parse("correct horse").unwrap())
            .unwrap();
        assert!(hash.as_ref().starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", &hash));
        assert!(!hasher.verify("correct horsE", &hash));
    }

    #[test]
    fn a_malformed_stored_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        assert!(!hasher.verify("anything", &PasswordHash::new("not a phc string")));
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher::new().unwrap();
        let password = Password::parse("correct horse").unwrap();
        assert_ne!(
            hasher.hash(&password).unwrap(),
            hasher.hash(&password).unwrap()
        );
    }
}
