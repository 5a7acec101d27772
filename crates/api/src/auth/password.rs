//! Argon2id password hashing (the `PasswordHasher` port), and checking the
//! hashes of accounts imported from Django.
//!
//! New hashes are always our Argon2id. A stored hash is one of:
//! - ours, a PHC string: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`;
//! - Django's `auth_user.password`, copied verbatim: `pbkdf2_sha256$...`,
//!   `pbkdf2_sha1$...`, `argon2$argon2id$...` (or `argon2$argon2i$...`),
//!   `bcrypt_sha256$$2b$...` or `bcrypt$$2b$...` (see [`Argon2Hasher::verify_django`]).
//!
//! Every other value never verifies, and costs no work of its own (the
//! service then runs the decoy): in particular a `!` prefix, Django's
//! unusable password (`make_password(None)`, `set_unusable_password()`),
//! which is also what the import stores for accounts that were inactive
//! (`is_active = false`) in Django, so those cannot log in without a flag
//! of their own. Each format's work is bounded before any is done, so a
//! crafted row cannot hold a login thread for long.

use argon2::password_hash::{phc, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Params};
use base64ct::{Base64, Encoding as _};
use chat_domain::user::{HashingError, Password, PasswordCheck, PasswordHash, PasswordHasher};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

/// The most memory (KiB) a stored Argon2 hash may make a login spend:
/// 256 MiB. Ours take 19 MiB, Django's 100 MiB; a row asking for gigabytes
/// is refused instead of computed.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes a stored Argon2 hash may ask for (ours and Django's: 2).
pub const MAX_ARGON2_PASSES: u32 = 10;
/// The most PBKDF2 iterations a Django hash may ask for. Django 5.1 uses
/// 870,000 and raises it every release; ten million is a few seconds.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// The highest bcrypt cost accepted. Django uses 12; each step doubles the
/// work, so 16 is sixteen times that (seconds). bcrypt itself goes up to
/// 31, which would take days.
pub const MAX_BCRYPT_COST: u32 = 16;

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
        let stored = hash.as_ref();
        if stored.starts_with('$') {
            self.verify_argon2(candidate, stored)
        } else {
            self.verify_django(candidate, stored)
        }
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

    /// A hash from Django's `auth_user.password`, `<algorithm>$<rest>`
    /// (Django's `django/contrib/auth/hashers.py`). A match is always
    /// outdated: it is to be replaced by our Argon2id.
    fn verify_django(&self, candidate: &str, stored: &str) -> PasswordCheck {
        // Django's unusable password: `!` and 40 random characters.
        if stored.starts_with('!') {
            return PasswordCheck::Unusable;
        }
        let Some((algorithm, rest)) = stored.split_once('$') else {
            return PasswordCheck::Unusable;
        };
        let matched = match algorithm {
            "pbkdf2_sha256" => verify_pbkdf2(Prf::Sha256, candidate, rest),
            "pbkdf2_sha1" => verify_pbkdf2(Prf::Sha1, candidate, rest),
            // The PHC string with its leading `$` taken for the separator.
            "argon2" => {
                return match self.verify_argon2(candidate, &format!("${rest}")) {
                    PasswordCheck::Matches => PasswordCheck::MatchesOutdated,
                    other => other,
                }
            }
            // The password's SHA-256 in lower-case hex is what is bcrypted
            // (so passwords over bcrypt's 72 bytes are not cut short).
            "bcrypt_sha256" => {
                let digest = sha2::Sha256::digest(candidate.as_bytes());
                verify_bcrypt(lower_hex(&digest).as_bytes(), rest)
            }
            // Plain bcrypt (Django's `BCryptPasswordHasher`): the password
            // itself, cut at 72 bytes as bcrypt always did.
            "bcrypt" => verify_bcrypt(candidate.as_bytes(), rest),
            _ => None,
        };
        match matched {
            Some(true) => PasswordCheck::MatchesOutdated,
            Some(false) => PasswordCheck::Wrong,
            None => PasswordCheck::Unusable,
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

/// The HMAC inside a Django PBKDF2 hash.
#[derive(Clone, Copy)]
enum Prf {
    Sha256,
    Sha1,
}

/// `<iterations>$<salt>$<base64 of the derived key>`: PBKDF2-HMAC of the
/// password's UTF-8 with the salt's UTF-8 (the salt is used as the text
/// it is, not decoded), a key as long as the digest, standard Base64 with
/// padding. `None` when malformed or over [`MAX_PBKDF2_ITERATIONS`].
fn verify_pbkdf2(prf: Prf, candidate: &str, rest: &str) -> Option<bool> {
    let mut parts = rest.splitn(3, '$');
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = parts.next()?;
    let encoded = parts.next()?;
    // Django refuses to hash with an empty salt, so none verifies.
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS || salt.is_empty() {
        return None;
    }
    let key_len = match prf {
        Prf::Sha256 => 32,
        Prf::Sha1 => 20,
    };
    let mut stored = [0u8; 32];
    let stored = Base64::decode(encoded, &mut stored).ok()?;
    // Django's key is the digest's length: any other never matches.
    if stored.len() != key_len {
        return None;
    }
    let mut derived = [0u8; 32];
    let derived = derived.get_mut(..key_len)?;
    let (password, salt) = (candidate.as_bytes(), salt.as_bytes());
    match prf {
        Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, derived),
        Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, derived),
    }
    Some(derived.ct_eq(stored).into())
}

/// A bcrypt string (`$2b$<cost>$<22 characters of salt><31 of hash>`),
/// compared in constant time by the `bcrypt` crate. `None` when malformed
/// or over [`MAX_BCRYPT_COST`].
fn verify_bcrypt(password: &[u8], bcrypt_hash: &str) -> Option<bool> {
    // The same split the crate makes: "", "2b", cost, salt and hash.
    let cost: u32 = bcrypt_hash.split('$').nth(2)?.parse().ok()?;
    if cost > MAX_BCRYPT_COST {
        return None;
    }
    bcrypt::verify(password, bcrypt_hash).ok()
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
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

    // Made by Django 5.1.15 itself (argon2-cffi 25.1.0, bcrypt 5.0.0, in a
    // virtual environment under /tmp), with
    // `settings.configure(PASSWORD_HASHERS=[...the five hashers...])`,
    // `django.setup()` and
    // `make_password("correct horse ☃ battery", hasher=<algorithm>)`, each
    // checked there with `check_password`. The Argon2i ones, as Django
    // before 1.11 (argon2-cffi before 16.x) stored them, are
    // `"argon2" + argon2.low_level.hash_secret(password, b"oldsaltoldsalt",
    // time_cost=2, memory_cost=512, parallelism=2, hash_len=16,
    // type=Type.I[, version=16])`, the last with its `v=16$` removed (a PHC
    // string without a version is version 1.0), which Django's
    // `check_password` accepts too.
    const DJANGO_PASSWORD: &str = "correct horse ☃ battery";
    const DJANGO_PBKDF2_SHA256: &str = "pbkdf2_sha256$870000$tEWDNyJmGSaG3vFFdGNSq0$\
        UwyOFAg7VsHsLXS59FmIk2PXAed1X5AAACVRez1WU+A=";
    const DJANGO_PBKDF2_SHA1: &str =
        "pbkdf2_sha1$870000$NOediVLx2eFoKXZxJRpQgW$iVFFEUQQQJ9Pz+hV0dGw+NMxKrQ=";
    const DJANGO_ARGON2ID: &str = "argon2$argon2id$v=19$m=102400,t=2,p=8$\
        YWlxRHFrNjlERlBybk1KMXFIcTIyVA$ONgQgw1aSlOmjQXZE0QEgx5I9JAR5m3wYWpryK+7xZs";
    const DJANGO_ARGON2I: &str =
        "argon2$argon2i$v=19$m=512,t=2,p=2$b2xkc2FsdG9sZHNhbHQ$Tmg3AXX9u539GlTM9mShSA";
    const DJANGO_ARGON2I_V16: &str =
        "argon2$argon2i$v=16$m=512,t=2,p=2$b2xkc2FsdG9sZHNhbHQ$cEaPKSGD+0FN/YuIgpDXiw";
    const DJANGO_ARGON2I_NO_VERSION: &str =
        "argon2$argon2i$m=512,t=2,p=2$b2xkc2FsdG9sZHNhbHQ$cEaPKSGD+0FN/YuIgpDXiw";
    const DJANGO_BCRYPT_SHA256: &str =
        "bcrypt_sha256$$2b$12$qf1epQhPleln8VtrPmpDGOFiR/2r0gOBactLOKl.zs.fYOUQ4P6zm";
    const DJANGO_BCRYPT: &str =
        "bcrypt$$2b$12$72gbLKAoY0H1oTB3Se/Xb.MWXnI2LmtL3OousW/mgiuMxyhhB3rPu";
    /// `make_password(None)`.
    const DJANGO_UNUSABLE: &str = "!odFoDONx9G7Zkzy0jvkbb1YtivtLzJ3IdSGcFJGz";

    const DJANGO_HASHES: [&str; 8] = [
        DJANGO_PBKDF2_SHA256,
        DJANGO_PBKDF2_SHA1,
        DJANGO_ARGON2ID,
        DJANGO_ARGON2I,
        DJANGO_ARGON2I_V16,
        DJANGO_ARGON2I_NO_VERSION,
        DJANGO_BCRYPT_SHA256,
        DJANGO_BCRYPT,
    ];

    fn check(hasher: &Argon2Hasher, candidate: &str, stored: &str) -> PasswordCheck {
        hasher.verify(candidate, &PasswordHash::new(stored))
    }

    #[test]
    fn each_django_format_verifies_its_password_and_asks_to_be_rehashed() {
        let hasher = Argon2Hasher::new().unwrap();
        for stored in DJANGO_HASHES {
            assert_eq!(
                check(&hasher, DJANGO_PASSWORD, stored),
                PasswordCheck::MatchesOutdated,
                "{stored}"
            );
        }
    }

    #[test]
    fn each_django_format_refuses_a_wrong_password() {
        let hasher = Argon2Hasher::new().unwrap();
        for stored in DJANGO_HASHES {
            for wrong in ["correct horse ☃ batterY", "correct horse battery", ""] {
                assert_eq!(
                    check(&hasher, wrong, stored),
                    PasswordCheck::Wrong,
                    "{wrong:?} against {stored}"
                );
            }
        }
    }

    /// The same string with one character of its hash part changed.
    fn tampered(stored: &str) -> String {
        let mut chars: Vec<char> = stored.chars().collect();
        let at = chars.len() - 3;
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    #[test]
    fn a_tampered_django_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        for stored in DJANGO_HASHES {
            let tampered = tampered(stored);
            assert_ne!(tampered, stored);
            assert!(
                !check(&hasher, DJANGO_PASSWORD, &tampered).is_match(),
                "{tampered}"
            );
        }
        // Other iterations, another salt, another variant, a cut hash.
        for tampered in [
            DJANGO_PBKDF2_SHA256.replace("870000", "870001"),
            DJANGO_PBKDF2_SHA1.replace("NOediVLx2eFoKXZxJRpQgW", "NOediVLx2eFoKXZxJRpQgX"),
            DJANGO_PBKDF2_SHA256.replace("pbkdf2_sha256", "pbkdf2_sha1"),
            DJANGO_ARGON2I.replace("argon2i", "argon2id"),
            DJANGO_ARGON2I_V16.replace("v=16", "v=19"),
            DJANGO_BCRYPT_SHA256.replace("bcrypt_sha256", "bcrypt"),
            DJANGO_BCRYPT.replace("bcrypt$", "bcrypt_sha256$"),
            DJANGO_PBKDF2_SHA256[..DJANGO_PBKDF2_SHA256.len() - 4].to_owned(),
        ] {
            assert!(
                !check(&hasher, DJANGO_PASSWORD, &tampered).is_match(),
                "{tampered}"
            );
        }
    }

    #[test]
    fn unusable_and_unrecognised_hashes_never_verify() {
        let hasher = Argon2Hasher::new().unwrap();
        let unusable_prefixed = format!("!{DJANGO_PBKDF2_SHA256}");
        for stored in [
            DJANGO_UNUSABLE,
            "!",
            // An import that marks an inactive account keeps the old hash
            // behind the `!`: still unusable.
            unusable_prefixed.as_str(),
            "",
            "$",
            "md5$salt$0123456789abcdef0123456789abcdef",
            "sha1$$0123456789abcdef0123456789abcdef01234567",
            "unsalted_md5$0123456789abcdef0123456789abcdef",
            "scrypt$16384$salt$8$1$aGFzaA==",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$870000$$UwyOFAg7VsHsLXS59FmIk2PXAed1X5AAACVRez1WU+A=",
            "pbkdf2_sha256$0$salt$UwyOFAg7VsHsLXS59FmIk2PXAed1X5AAACVRez1WU+A=",
            "pbkdf2_sha256$-1$salt$UwyOFAg7VsHsLXS59FmIk2PXAed1X5AAACVRez1WU+A=",
            "pbkdf2_sha256$870000$salt$not base64",
            "argon2$",
            "argon2$argon2x$v=19$m=512,t=2,p=2$b2xkc2FsdG9sZHNhbHQ$Tmg3AXX9u539GlTM9mShSA",
            "bcrypt_sha256$",
            "bcrypt_sha256$$2b$xx$qf1epQhPleln8VtrPmpDGOFiR/2r0gOBactLOKl.zs.fYOUQ4P6zm",
            "bcrypt$$2b$12$tooshort",
        ] {
            assert_eq!(
                check(&hasher, DJANGO_PASSWORD, stored),
                PasswordCheck::Unusable,
                "{stored:?}"
            );
            assert_eq!(check(&hasher, "", stored), PasswordCheck::Unusable);
        }
    }

    #[test]
    fn hashes_asking_absurd_work_are_refused_at_once() {
        let hasher = Argon2Hasher::new().unwrap();
        let started = std::time::Instant::now();
        for stored in [
            DJANGO_PBKDF2_SHA256.replace("870000", "10000001"),
            DJANGO_PBKDF2_SHA256.replace("870000", "4294967295"),
            DJANGO_PBKDF2_SHA256.replace("870000", "99999999999999999999"),
            DJANGO_PBKDF2_SHA1.replace("870000", "2000000000"),
            DJANGO_BCRYPT_SHA256.replace("$12$", "$17$"),
            DJANGO_BCRYPT_SHA256.replace("$12$", "$31$"),
            DJANGO_BCRYPT.replace("$12$", "$31$"),
            DJANGO_ARGON2ID.replace("m=102400", "m=4194304"),
            DJANGO_ARGON2ID.replace("t=2", "t=100000"),
        ] {
            assert_eq!(
                check(&hasher, DJANGO_PASSWORD, &stored),
                PasswordCheck::Unusable,
                "{stored}"
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_rehash_of_a_django_password_is_our_current_argon2id() {
        let hasher = Argon2Hasher::new().unwrap();
        let fresh = hasher
            .hash(&Password::already_accepted(DJANGO_PASSWORD))
            .unwrap();
        assert!(fresh
            .as_ref()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            hasher.verify(DJANGO_PASSWORD, &fresh),
            PasswordCheck::Matches
        );
    }

    #[test]
    fn lower_hex_is_what_python_hexlify_gives() {
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
