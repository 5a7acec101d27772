//! [`StoredTime`]: a `Timestamp` column read without chrono's format parser.
//!
//! SQLite keeps timestamps as text. Diesel's reader tries each format it
//! accepts with `NaiveDateTime::parse_from_str`, which interprets the format
//! string anew on every value: in a profile of the chat list of 1,000 chats
//! that was a ninth of the request (three timestamps a row). The text Diesel
//! itself writes (`YYYY-MM-DD HH:MM:SS` with an optional fraction, chrono's
//! `%F %T%.f`) is read here by hand; any other form a database may hold
//! (a `T` separator, a time zone, a Julian day) still goes to Diesel's
//! reader, so nothing that read before stops reading. PostgreSQL sends a
//! binary timestamp, which Diesel already reads fast.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::sql_types::Timestamp;

/// A stored `Timestamp`, as naive UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromSqlRow)]
pub(crate) struct StoredTime(pub NaiveDateTime);

#[cfg(feature = "sqlite")]
impl FromSql<Timestamp, diesel::sqlite::Sqlite> for StoredTime {
    fn from_sql(
        mut value: <diesel::sqlite::Sqlite as diesel::backend::Backend>::RawValue<'_>,
    ) -> deserialize::Result<Self> {
        if let Some(time) = parse_written_form(value.read_text()) {
            return Ok(Self(time));
        }
        <NaiveDateTime as FromSql<Timestamp, diesel::sqlite::Sqlite>>::from_sql(value).map(Self)
    }
}

#[cfg(feature = "postgres")]
impl FromSql<Timestamp, diesel::pg::Pg> for StoredTime {
    fn from_sql(
        value: <diesel::pg::Pg as diesel::backend::Backend>::RawValue<'_>,
    ) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, diesel::pg::Pg>>::from_sql(value).map(Self)
    }
}

/// `YYYY-MM-DD HH:MM:SS` followed by nothing or by `.` and 1 to 9 digits;
/// `None` for anything else, including an impossible date or time.
fn parse_written_form(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let (stamp, fraction) = bytes.split_at_checked(19)?;
    let separators_in_place = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')]
        .iter()
        .all(|&(at, expected)| stamp[at] == expected);
    if !separators_in_place {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let nanoseconds = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(number(&stamp[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, number(&stamp[5..7])?, number(&stamp[8..10])?)?.and_hms_nano_opt(
        number(&stamp[11..13])?,
        number(&stamp[14..16])?,
        number(&stamp[17..19])?,
        nanoseconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_reads(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap()
    }

    #[test]
    fn reads_what_diesel_writes_exactly() {
        let times = [
            "2026-12-07 15:40:01",
            "2026-12-07 15:40:01.5",
            "2026-12-07 15:40:01.123",
            "2026-12-07 15:40:01.123456",
            "2026-12-07 15:40:01.123456789",
            "1999-12-31 23:59:59.999999",
            "2024-02-29 00:00:00.000001",
        ];
        for text in times {
            assert_eq!(parse_written_form(text), Some(chrono_reads(text)), "{text}");
        }
        // Round trip through the form Diesel writes (`%F %T%.f`).
        let now = crate::models::now();
        let written = now.format("%F %T%.f").to_string();
        assert_eq!(parse_written_form(&written), Some(now), "{written}");
    }

    #[test]
    fn leaves_every_other_form_to_diesel() {
        let others = [
            "",
            "2026-12-07",
            "2026-12-07T15:40:01",
            "2026-12-07 15:40:01Z",
            "2026-12-07 15:40:01+00:00",
            "2026-12-07 15:40:01.",
            "2026-12-07 15:40:01.1234567890",
            "2026-12-07 15:40:01,5",
            "2026-13-07 15:40:01",
            "2026-02-30 15:40:01",
            "2026-12-07 24:00:00",
            "2026-12-07 15:40:0x",
            "+2026-12-07 15:40:01",
            "2460651.5",
            "２０２６-12-07 15:40:01",
        ];
        for text in others {
            assert_eq!(parse_written_form(text), None, "{text:?}");
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_sqlite_value_in_another_form_is_still_read() {
        use diesel::{dsl::sql, Connection as _, RunQueryDsl as _, SqliteConnection};
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let read = |conn: &mut SqliteConnection, literal: &str| {
            diesel::select(sql::<Timestamp>(literal))
                .get_result::<StoredTime>(conn)
                .unwrap()
                .0
        };
        let expected = chrono_reads("2026-12-07 15:40:01.25");
        assert_eq!(read(&mut conn, "'2026-12-07 15:40:01.25'"), expected);
        assert_eq!(read(&mut conn, "'2026-12-07T15:40:01.25'"), expected);
        assert_eq!(
            read(&mut conn, "'2026-12-07 15:40'"),
            chrono_reads("2026-12-07 15:40:00")
        );
        // A Julian day number, as SQLite's julianday() stores it.
        assert_eq!(
            read(&mut conn, "2451545.0"),
            chrono_reads("2000-01-01 12:00:00")
        );
    }
}
