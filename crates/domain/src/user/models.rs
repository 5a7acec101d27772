//! User value types.

use std::fmt;

use unicode_normalization::UnicodeNormalization as _;

/// The database id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(i64);

impl UserId {
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A username: 1 to 150 characters, each either one for which
/// `char::is_alphanumeric` holds (Unicode's `Alphabetic` property, or a
/// number: general category `Nd`, `Nl` or `No`) or one of `@ . + - _`.
///
/// This is Django's default validator (`^[\w.@+-]+\Z`, Unicode) and a
/// little more: everything it accepts is accepted here, and so are the
/// characters Unicode calls alphabetic that are not letters, which Python's
/// `\w` rejects: combining marks (categories `Mn`/`Mc`, such as the vowel
/// sign in `नाम`) and the circled, squared and negative circled or squared
/// Latin letters (`Ⓐ`, `🄰`, `🅐`, `🅰`). (Compared code point by code point
/// with Python 3.11's `re`, whose Unicode is 14; later versions add
/// characters to both.) The rule stays as it is so that every stored
/// username keeps parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username may not be empty")]
    Empty,
    #[error("username may be at most {max} characters long")]
    TooLong { max: usize },
    #[error("username may contain only letters, digits and @ . + - _ (found {0:?})")]
    InvalidCharacter(char),
    /// A character that renders as nothing (U+3164 HANGUL FILLER and the
    /// like): `alice\u{3164}` would look exactly like `alice`.
    #[error("username may not contain invisible characters (found U+{:04X})", u32::from(*.0))]
    Invisible(char),
}

impl Username {
    pub const MAX_CHARS: usize = 150;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        // Nearly every name is short ASCII: one pass over the bytes decides
        // it (every stored name is parsed again on each read, 3,000 times
        // for a chat list of 1,000 chats).
        let plain_ascii = raw.len() <= Self::MAX_CHARS
            && raw.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'+' | b'-' | b'_')
            });
        if plain_ascii && !raw.is_empty() {
            return Ok(Self(raw.to_owned()));
        }
        if raw.is_empty() {
            return Err(UsernameError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(UsernameError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')))
        {
            return Err(UsernameError::InvalidCharacter(bad));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A name for a new account: NFKC-normalised first (as Django's
    /// `create_user` does, so the full-width `ａｌｉｃｅ` becomes `alice`
    /// and `Ⓐlice` becomes `Alice`), then checked by [`parse`](Self::parse)
    /// and refused if it holds a character that renders as nothing.
    /// Existing names are read with `parse` alone, so every stored name
    /// keeps working.
    pub fn new_account(raw: &str) -> Result<Self, UsernameError> {
        let normalized: String = raw.nfkc().collect();
        let name = Self::parse(&normalized)?;
        if let Some(invisible) = normalized.chars().find(|c| renders_as_nothing(*c)) {
            return Err(UsernameError::Invisible(invisible));
        }
        Ok(name)
    }

    /// The form uniqueness and login compare: NFKC, lower case, NFKC again
    /// (lowering can undo a normalisation). `Alice`, `ALICE` and
    /// `ａｌｉｃｅ` all have the key `alice`.
    pub fn key(&self) -> UsernameKey {
        UsernameKey::of(&self.0)
    }
}

/// A username as compared for uniqueness and at login; see
/// [`Username::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsernameKey(String);

impl UsernameKey {
    /// The key of any string, valid username or not (a login attempt).
    pub fn of(raw: &str) -> Self {
        let normalized: String = raw.nfkc().collect();
        Self(normalized.to_lowercase().nfkc().collect())
    }
}

impl AsRef<str> for UsernameKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Unicode's default-ignorable code points (drawn as nothing when a font
/// has no glyph for them) that `char::is_alphanumeric` lets through or
/// that NFKC keeps, and the Braille blank: the Hangul fillers, the Khmer
/// inherent vowels, Mongolian variation selectors, zero-width and
/// bidirectional controls, variation selectors, the byte-order mark,
/// shorthand format controls and tags.
fn renders_as_nothing(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5
        | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0x2800 | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password that meets the policy (at least 8 characters). Never
/// printed: `Debug` is redacted so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {min} characters long")]
    TooShort { min: usize },
}

impl Password {
    pub const MIN_CHARS: usize = 8;

    pub fn parse(raw: &str) -> Result<Self, PasswordError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(PasswordError::TooShort {
                min: Self::MIN_CHARS,
            });
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password that has just opened its account, to be hashed again in
    /// the current format. The policy is for new passwords: an account
    /// imported from Django may have a shorter one, and its owner should
    /// not be locked out of the new hash for it.
    pub fn already_accepted(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl AsRef<str> for Password {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }
}

impl AsRef<str> for PasswordHash {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A registered user, as every other user may see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
}

/// What the user repository needs to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: Username,
    pub password_hash: PasswordHash,
}

/// A user together with the hash their password is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub user: User,
    pub password_hash: PasswordHash,
    pub token_generation: TokenGeneration,
}

/// Which of a user's tokens are valid: those issued at the user's current
/// generation. Changing the password or logging out moves it on, which
/// revokes every token issued before (tokens carry it as a claim; one
/// issued before generations existed counts as generation 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TokenGeneration(pub i64);

/// A bearer token, as handed to a client after login. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl AsRef<str> for AuthToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_username_is_accepted() {
        let name = Username::parse("alice_01").map(|u| u.to_string());
        assert_eq!(name, Ok("alice_01".to_owned()));
    }

    #[test]
    fn every_allowed_symbol_is_accepted() {
        assert!(Username::parse("a@b.c+d-e_f").is_ok());
    }

    #[test]
    fn unicode_letters_and_digits_are_accepted() {
        assert!(Username::parse("Zoë٣").is_ok());
        assert!(Username::parse("用户").is_ok());
    }

    #[test]
    fn alphabetic_marks_and_letter_symbols_that_django_rejects_are_accepted() {
        // The documented difference from Django's `\w`: a vowel sign
        // (U+093E, category Mc) and a circled letter (U+24B6, So).
        assert!(Username::parse("नाम").is_ok());
        assert!(Username::parse("Ⓐlice").is_ok());
        // Other symbols stay out.
        assert_eq!(
            Username::parse("a☺"),
            Err(UsernameError::InvalidCharacter('☺'))
        );
    }

    #[test]
    fn an_empty_username_is_rejected() {
        assert_eq!(Username::parse(""), Err(UsernameError::Empty));
    }

    #[test]
    fn a_username_of_150_characters_is_accepted_and_151_rejected() {
        assert!(Username::parse(&"é".repeat(150)).is_ok());
        assert_eq!(
            Username::parse(&"é".repeat(151)),
            Err(UsernameError::TooLong { max: 150 })
        );
    }

    #[test]
    fn the_ascii_fast_path_draws_the_same_line_as_the_general_rule() {
        for byte in 0u8..=127 {
            let c = char::from(byte);
            let expected_ok = c.is_alphanumeric() || "@.+-_".contains(c);
            let name = format!("a{c}b");
            match Username::parse(&name) {
                Ok(parsed) => assert!(expected_ok && parsed.as_ref() == name, "{c:?}"),
                Err(e) => {
                    assert!(!expected_ok, "{c:?}");
                    assert_eq!(e, UsernameError::InvalidCharacter(c), "{c:?}");
                }
            }
        }
        assert!(Username::parse(&"a".repeat(150)).is_ok());
        assert_eq!(
            Username::parse(&"a".repeat(151)),
            Err(UsernameError::TooLong { max: 150 })
        );
        // Past the fast path: non-ASCII letters still pass, symbols do not.
        assert!(Username::parse("zoë.ü").is_ok());
        assert_eq!(
            Username::parse("zoë€"),
            Err(UsernameError::InvalidCharacter('€'))
        );
    }

    #[test]
    fn spaces_and_punctuation_in_a_username_are_rejected() {
        assert_eq!(
            Username::parse("bob smith"),
            Err(UsernameError::InvalidCharacter(' '))
        );
        assert_eq!(
            Username::parse("bob!"),
            Err(UsernameError::InvalidCharacter('!'))
        );
        assert_eq!(
            Username::parse("a\0"),
            Err(UsernameError::InvalidCharacter('\0'))
        );
    }

    #[test]
    fn a_password_needs_eight_characters() {
        assert_eq!(
            Password::parse("1234567"),
            Err(PasswordError::TooShort { min: 8 })
        );
        assert!(Password::parse("12345678").is_ok());
        // Characters, not bytes: four two-byte characters are still too short.
        assert!(Password::parse("éééé").is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let password = Password::parse("hunter2hunter2").map(|p| format!("{p:?}"));
        assert_eq!(password, Ok("Password(<redacted>)".to_owned()));
        assert_eq!(
            format!("{:?}", AuthToken::new("secret.jwt.value")),
            "AuthToken(<redacted>)"
        );
    }

    #[test]
    fn a_new_account_name_is_nfkc_normalised() {
        let name = |raw: &str| Username::new_account(raw).map(|u| u.to_string());
        assert_eq!(name("ａｌｉｃｅ"), Ok("alice".to_owned()));
        assert_eq!(name("Ⓐlice"), Ok("Alice".to_owned()));
        // A decomposed é is composed.
        assert_eq!(name("Zoe\u{301}"), Ok("Zoé".to_owned()));
    }

    #[test]
    fn names_that_differ_in_case_or_width_share_a_key() {
        let key = |raw: &str| Username::parse(raw).map(|u| u.key());
        let alice = key("alice");
        for variant in ["Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
            assert_eq!(key(variant), alice, "{variant}");
        }
        assert_ne!(key("alice2"), alice);
        assert_eq!(UsernameKey::of("ALİCE").as_ref(), "ali\u{307}ce");
    }

    #[test]
    fn fillers_that_render_as_nothing_are_refused_in_new_names() {
        for raw in [
            "\u{3164}",
            "alice\u{3164}",
            "\u{FFA0}",
            "a\u{115F}",
            "a\u{1160}",
        ] {
            assert!(
                matches!(Username::new_account(raw), Err(UsernameError::Invisible(_))),
                "{raw:?}"
            );
        }
        // Other invisible characters are not letters in the first place.
        for raw in ["a\u{200B}", "a\u{17B4}", "a\u{2800}", "a\u{FEFF}"] {
            assert!(Username::new_account(raw).is_err(), "{raw:?}");
        }
        // Stored names with them still parse, so such accounts keep working.
        assert!(Username::parse("alice\u{3164}").is_ok());
    }
}
