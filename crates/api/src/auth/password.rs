//! Argon2id password hashing (the `PasswordHasher` port).

use argon2::password_hash::{phc, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Params};
use chat_domain::user::{HashingError, Password, PasswordCheck, PasswordHash, PasswordHasher};

/// The most memory (KiB) a stored Argon2 hash may make a login spend:
/// 256 MiB. Ours take 19 MiB, Django's 100 MiB; a row asking for gigabytes
/// is refused instead of computed.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes a stored Argon2 hash may ask for (ours and Django's: 2).
pub const MAX_ARGON2_PASSES: u32 = 10;

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

    fn verify(&self, candidate: &str, hash: &PasswordHash) -> PasswordCheck {
        self.verify_argon2(candidate, hash.as_ref())
    }

    fn verify_decoy(&self, candidate: &str) {
        // The result is meaningless; only the work matters.
        let _ = self
            .argon2
            .verify_password(candidate.as_bytes(), self.decoy.as_str());
    }
}

impl Argon2Hasher {
    /// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>`);
    /// outdated unless it is Argon2id, version 19, with our parameters.
    fn verify_argon2(&self, candidate: &str, phc: &str) -> PasswordCheck {
        let Ok(mut parsed) = phc::PasswordHash::new(phc) else {
            return PasswordCheck::Unusable;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return PasswordCheck::Unusable;
        };
        // The work is the hash's to say: bound it before doing any.
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > MAX_ARGON2_PASSES {
            return PasswordCheck::Unusable;
        }
        // A PHC string without `v=` is Argon2 version 1.0 (0x10), not the
        // crate's default 0x13.
        if parsed.version.is_none() {
            parsed.version = Some(0x10);
        }
        match self.argon2.verify_password(candidate.as_bytes(), &parsed) {
            Ok(()) if self.is_current(&parsed, &params) => PasswordCheck::Matches,
            Ok(()) => PasswordCheck::MatchesOutdated,
            Err(argon2::password_hash::Error::PasswordInvalid) => PasswordCheck::Wrong,
            // An unknown variant, a bad salt or output length: nothing was
            // computed, and no password can match.
            Err(_) => PasswordCheck::Unusable,
        }
    }

    /// Whether a hash is what [`hash`](PasswordHasher::hash) makes today.
    fn is_current(&self, parsed: &phc::PasswordHash, params: &Params) -> bool {
        let ours = self.argon2.params();
        parsed.algorithm.as_str() == "argon2id"
            && parsed.version == Some(0x13)
            && params.m_cost() == ours.m_cost()
            && params.t_cost() == ours.t_cost()
            && params.p_cost() == ours.p_cost()
            && params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
                == ours.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
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
        assert_eq!(
            hasher.verify("correct horse", &hash),
            PasswordCheck::Matches
        );
        assert_eq!(hasher.verify("correct horsE", &hash), PasswordCheck::Wrong);
    }

    #[test]
    fn a_malformed_stored_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        assert_eq!(
            hasher.verify("anything", &PasswordHash::new("not a phc string")),
            PasswordCheck::Unusable
        );
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

    #[test]
    fn our_argon2id_with_other_parameters_matches_but_is_outdated() {
        let hasher = Argon2Hasher::new().unwrap();
        let lighter = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let hash = PasswordHash::new(lighter.hash_password(b"correct horse").unwrap().to_string());
        assert_eq!(
            hasher.verify("correct horse", &hash),
            PasswordCheck::MatchesOutdated
        );
        assert_eq!(hasher.verify("wrong horse", &hash), PasswordCheck::Wrong);
    }

    #[test]
    fn an_argon2_hash_asking_for_gigabytes_is_refused_without_computing_it() {
        let hasher = Argon2Hasher::new().unwrap();
        // 4 GiB and a thousand passes: minutes of work, if it were done.
        let greedy = PasswordHash::new(
            "$argon2id$v=19$m=4194304,t=1000,p=1$c29tZXNhbHRzb21lc2FsdA$\
             ONgQgw1aSlOmjQXZE0QEgx5I9JAR5m3wYWpryK+7xZs",
        );
        let started = std::time::Instant::now();
        assert_eq!(hasher.verify("anything", &greedy), PasswordCheck::Unusable);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }
}
