//! [`UserRepository`]: accounts.

use chat_domain::user::{
    CreateUserError, NewUser, PasswordHash, StoredCredentials, User, UserId, UserRepository,
    Username,
};
use chat_domain::RepositoryError;
use chrono::{DateTime, SubsecRound as _, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::database::{with_conn, Database};
use crate::error::StoreError;
use crate::models::{now, user_from_row, NewUserRow, UserRow};
use crate::schema::users;

impl UserRepository for Database {
    fn create_user(&self, new_user: &NewUser) -> Result<User, CreateUserError> {
        let row = NewUserRow {
            username: new_user.username.as_ref(),
            password_hash: new_user.password_hash.as_ref(),
            created: now(),
        };
        let id = with_conn!(self, |conn| diesel::insert_into(users::table)
            .values(&row)
            .returning(users::id)
            .get_result::<i64>(conn));
        match id {
            Ok(id) => Ok(User {
                id: UserId::new(id),
                username: new_user.username.clone(),
            }),
            // `username` is the only unique column besides the generated id.
            Err(StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _,
            ))) => Err(CreateUserError::Duplicate),
            Err(e) => Err(RepositoryError::from(e).into()),
        }
    }

    fn find_credentials(
        &self,
        username: &Username,
    ) -> Result<Option<StoredCredentials>, RepositoryError> {
        let row = with_conn!(self, |conn| users::table
            .filter(users::username.eq(username.as_ref()))
            .select((users::id, users::username, users::password_hash))
            .first::<(i64, String, String)>(conn)
            .optional())?;
        row.map(|(id, name, hash)| {
            Ok(StoredCredentials {
                user: user_from_row((id, name))?,
                password_hash: PasswordHash::new(hash),
            })
        })
        .transpose()
    }

    fn find_user(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        let row = with_conn!(self, |conn| users::table
            .find(id.get())
            .select((users::id, users::username))
            .first::<UserRow>(conn)
            .optional())?;
        row.map(user_from_row).transpose()
    }

    fn list_users_except(&self, id: UserId) -> Result<Vec<User>, RepositoryError> {
        let rows = with_conn!(self, |conn| users::table
            .filter(users::id.ne(id.get()))
            .order(users::id.asc())
            .select((users::id, users::username))
            .load::<UserRow>(conn))?;
        rows.into_iter().map(user_from_row).collect()
    }

    fn search_users(
        &self,
        except: UserId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<User>, RepositoryError> {
        let pattern = format!("%{}%", escape_like(&needle.to_ascii_lowercase()));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_conn!(self, |conn| users::table
            .filter(users::id.ne(except.get()))
            .filter(lower(users::username).like(&pattern).escape('\\'))
            .order((lower(users::username).asc(), users::id.asc()))
            .limit(limit)
            .select((users::id, users::username))
            .load::<UserRow>(conn))?;
        rows.into_iter().map(user_from_row).collect()
    }

    fn set_last_seen(&self, id: UserId, at: DateTime<Utc>) -> Result<(), RepositoryError> {
        let at = at.trunc_subsecs(6).naive_utc();
        with_conn!(self, |conn| diesel::update(users::table.find(id.get()))
            .set(users::last_seen.eq(at))
            .execute(conn))?;
        Ok(())
    }
}

diesel::define_sql_function! {
    /// SQL `lower()`: both backends have it (SQLite's folds ASCII only).
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// `needle` as a literal inside a `LIKE ... ESCAPE '\\'` pattern: usernames
/// may hold `_`, which LIKE would read as "any character".
fn escape_like(needle: &str) -> String {
    let mut escaped = String::with_capacity(needle.len());
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
