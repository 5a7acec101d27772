//! Property tests of the value types: each constructor accepts exactly what
//! its rule allows, says why it refuses the rest, and keeps what it accepts
//! byte for byte. The rules are modelled here from their documentation, not
//! by calling the code under test.
//!
//! Domain types implement no serde (the api crate's DTOs do), so there is
//! no serde round-trip to check here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_domain::chat::{
    ChatId, MessageBody, MessageBodyError, MessageId, MessageLimit, Participants, SameUserError,
    UserPair,
};
use chat_domain::user::{
    AuthToken, Password, PasswordError, User, UserId, Username, UsernameError,
};
use proptest::prelude::*;

// --- Strategies -------------------------------------------------------------

/// Characters the username rule allows: letters and digits of any script,
/// and `@ . + - _`.
fn username_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()),
        2 => prop::sample::select(vec!['@', '.', '+', '-', '_']),
        // Latin letters with accents, Greek, Cyrillic, CJK, Arabic-Indic
        // digits, Roman numerals (letter numbers), superscript two (other
        // number): all letters or digits.
        2 => prop::sample::select(vec![
            'é', 'Ø', 'ß', 'ǅ', 'λ', 'Ж', '用', '户', '٣', '०', 'Ⅻ', '²', 'ª'
        ]),
        1 => any::<char>().prop_filter("a letter or digit", |c| c.is_alphabetic() || c.is_numeric()),
    ]
}

/// Characters the username rule refuses: whitespace, other punctuation and
/// symbols, controls, emoji.
fn forbidden_username_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            ' ', '\t', '\n', '\r', '\0', '\u{7f}', '\u{a0}', '\u{200b}', '\u{feff}', '!', '"', '#',
            '$', '%', '&', '\'', '(', ')', '*', ',', '/', ':', ';', '<', '=', '>', '?', '[', '\\',
            ']', '^', '`', '{', '|', '}', '~', '😀', '€', '·', '\u{301}',
        ]),
        any::<char>().prop_filter("neither letter, digit nor allowed symbol", |c| {
            !(c.is_alphabetic() || c.is_numeric() || "@.+-_".contains(*c))
        }),
    ]
}

fn string_of(
    chars: impl Strategy<Value = char>,
    len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = String> {
    prop::collection::vec(chars, len).prop_map(|cs| cs.into_iter().collect())
}

fn valid_username() -> impl Strategy<Value = String> {
    string_of(username_char(), 1..=Username::MAX_CHARS)
}

/// Any string, biased towards the short, the long and the multi-byte, where
/// character-versus-byte mistakes show.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        string_of(any::<char>(), 0..=300),
        string_of(
            prop::sample::select(vec!['a', 'é', '😀', '\0', ' ', '\u{301}']),
            0..=200
        ),
    ]
}

fn user(id: i64) -> User {
    User {
        id: UserId::new(id),
        username: Username::parse(&format!("user{id}")).unwrap(),
    }
}

/// Ids that collide often enough to exercise the "same user" branch.
fn user_id() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), -3i64..=3, Just(i64::MIN), Just(i64::MAX)]
}

// --- The rules, modelled from their documentation --------------------------

/// `Username`: 1 to 150 characters (not bytes); each a letter, a digit, or
/// one of `@ . + - _`. Emptiness is reported first, then length, then the
/// first offending character.
fn username_rule(raw: &str) -> Result<(), UsernameError> {
    let chars: Vec<char> = raw.chars().collect();
    if chars.is_empty() {
        return Err(UsernameError::Empty);
    }
    if chars.len() > 150 {
        return Err(UsernameError::TooLong { max: 150 });
    }
    for &c in &chars {
        let letter_or_digit = c.is_alphabetic() || c.is_numeric();
        if !(letter_or_digit || ['@', '.', '+', '-', '_'].contains(&c)) {
            return Err(UsernameError::InvalidCharacter(c));
        }
    }
    Ok(())
}

/// `MessageBody`: non-empty, at most `limit` characters (not bytes), no NUL;
/// checked in that order.
fn body_rule(raw: &str, limit: usize) -> Result<(), MessageBodyError> {
    let chars = raw.chars().count();
    if chars == 0 {
        Err(MessageBodyError::Empty)
    } else if chars > limit {
        Err(MessageBodyError::TooLong {
            max: limit,
            actual: chars,
        })
    } else if raw.bytes().any(|b| b == 0) {
        Err(MessageBodyError::ContainsNul)
    } else {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // --- Username ----------------------------------------------------------

    #[test]
    fn a_username_is_accepted_exactly_when_the_rule_allows_it(raw in prop_oneof![
        any_text(),
        valid_username(),
        string_of(username_char(), 140..=160),
    ]) {
        let parsed = Username::parse(&raw);
        prop_assert_eq!(parsed.as_ref().map(|_| ()).map_err(Clone::clone), username_rule(&raw));
        if let Ok(name) = parsed {
            prop_assert_eq!(name.as_ref(), raw.as_str());
            prop_assert_eq!(name.to_string(), raw);
        }
    }

    #[test]
    fn every_username_of_allowed_characters_is_kept_as_given(raw in valid_username()) {
        let name = Username::parse(&raw).unwrap();
        prop_assert_eq!(name.as_ref(), raw.as_str());
    }

    #[test]
    fn one_forbidden_character_anywhere_rejects_a_username(
        raw in string_of(username_char(), 0..=149),
        bad in forbidden_username_char(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = raw.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let raw: String = chars.into_iter().collect();
        prop_assert_eq!(Username::parse(&raw), Err(UsernameError::InvalidCharacter(bad)));
    }

    #[test]
    fn a_username_longer_than_150_characters_is_rejected_whatever_its_bytes(
        raw in string_of(username_char(), 151..=400),
    ) {
        prop_assert_eq!(Username::parse(&raw), Err(UsernameError::TooLong { max: 150 }));
    }

    // --- Password ----------------------------------------------------------

    #[test]
    fn a_password_is_accepted_exactly_when_it_has_eight_characters(raw in any_text()) {
        let parsed = Password::parse(&raw);
        if raw.chars().count() >= 8 {
            let password = parsed.unwrap();
            prop_assert_eq!(password.as_ref(), raw.as_str());
        } else {
            prop_assert_eq!(parsed, Err(PasswordError::TooShort { min: 8 }));
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output(raw in string_of(any::<char>(), 8..=64)) {
        let password = Password::parse(&raw).unwrap();
        prop_assert_eq!(format!("{password:?}"), "Password(<redacted>)");
        prop_assert_eq!(format!("{:?}", AuthToken::new(raw.clone())), "AuthToken(<redacted>)");
        let token = AuthToken::new(raw.clone());
        prop_assert_eq!(token.as_ref(), raw.as_str());
    }

    // --- Ids ---------------------------------------------------------------

    #[test]
    fn ids_keep_their_value_order_and_text(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(UserId::new(a).get(), a);
        prop_assert_eq!(ChatId::new(a).get(), a);
        prop_assert_eq!(MessageId::new(a).get(), a);
        prop_assert_eq!(UserId::new(a).to_string(), a.to_string());
        prop_assert_eq!(ChatId::new(a).to_string(), a.to_string());
        prop_assert_eq!(MessageId::new(a).to_string(), a.to_string());
        prop_assert_eq!(UserId::new(a).cmp(&UserId::new(b)), a.cmp(&b));
        prop_assert_eq!(ChatId::new(a).cmp(&ChatId::new(b)), a.cmp(&b));
        prop_assert_eq!(MessageId::new(a).cmp(&MessageId::new(b)), a.cmp(&b));
    }

    // --- MessageLimit and MessageBody ---------------------------------------

    #[test]
    fn a_limit_is_any_positive_number_of_characters(n in prop_oneof![any::<usize>(), 0usize..=3]) {
        let limit = MessageLimit::new(n);
        prop_assert_eq!(limit.is_some(), n > 0);
        if let Some(limit) = limit {
            prop_assert_eq!(limit.max_chars(), n);
        }
    }

    #[test]
    fn a_body_is_accepted_exactly_when_the_rule_allows_it(
        raw in any_text(),
        max in prop_oneof![1usize..=8, 1usize..=300, Just(4096)],
    ) {
        let limit = MessageLimit::new(max).unwrap();
        let parsed = MessageBody::parse(&raw, limit);
        prop_assert_eq!(parsed.as_ref().map(|_| ()).map_err(Clone::clone), body_rule(&raw, max));
        if let Ok(body) = parsed {
            prop_assert_eq!(body.as_ref(), raw.as_str());
        }
    }

    #[test]
    fn a_body_at_the_limit_is_accepted_and_one_more_character_is_not(
        c in any::<char>().prop_filter("not NUL", |c| *c != '\0'),
        max in 1usize..=200,
    ) {
        let limit = MessageLimit::new(max).unwrap();
        let at_limit = c.to_string().repeat(max);
        let body = MessageBody::parse(&at_limit, limit).unwrap();
        prop_assert_eq!(body.as_ref(), at_limit.as_str());
        let over = c.to_string().repeat(max + 1);
        prop_assert_eq!(
            MessageBody::parse(&over, limit),
            Err(MessageBodyError::TooLong { max, actual: max + 1 })
        );
    }

    #[test]
    fn a_nul_anywhere_in_a_body_within_the_limit_rejects_it(
        before in string_of(any::<char>(), 0..=50),
        after in string_of(any::<char>(), 0..=50),
    ) {
        let raw = format!("{before}\0{after}");
        prop_assert_eq!(
            MessageBody::parse(&raw, MessageLimit::DEFAULT),
            Err(MessageBodyError::ContainsNul)
        );
    }

    // --- Participants and UserPair -------------------------------------------

    #[test]
    fn participants_are_two_distinct_users_lower_id_first(a in user_id(), b in user_id(), c in user_id()) {
        let made = Participants::new(user(a), user(b));
        prop_assert_eq!(made.clone(), Participants::new(user(b), user(a)));
        if a == b {
            prop_assert_eq!(made, Err(SameUserError));
            return Ok(());
        }
        let p = made.unwrap();
        let [low, high] = p.users();
        prop_assert_eq!((low.id.get(), high.id.get()), (a.min(b), a.max(b)));
        prop_assert_eq!(low, &user(a.min(b)));
        prop_assert_eq!(high, &user(a.max(b)));
        prop_assert!(p.contains(UserId::new(a)) && p.contains(UserId::new(b)));
        prop_assert_eq!(p.other_than(UserId::new(a)), Some(&user(b)));
        prop_assert_eq!(p.other_than(UserId::new(b)), Some(&user(a)));
        let outsider = c != a && c != b;
        prop_assert_eq!(p.contains(UserId::new(c)), !outsider);
        prop_assert_eq!(p.other_than(UserId::new(c)).is_none(), outsider);
    }

    #[test]
    fn a_user_pair_is_the_ordered_pair_of_two_distinct_ids(a in user_id(), b in user_id()) {
        let pair = UserPair::new(UserId::new(a), UserId::new(b));
        prop_assert_eq!(pair, UserPair::new(UserId::new(b), UserId::new(a)));
        if a == b {
            prop_assert_eq!(pair, Err(SameUserError));
        } else {
            let pair = pair.unwrap();
            prop_assert_eq!((pair.low().get(), pair.high().get()), (a.min(b), a.max(b)));
        }
    }
}
