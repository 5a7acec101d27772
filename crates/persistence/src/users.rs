//! [`UserRepository`]: accounts.

use std::collections::HashSet;

use chat_domain::user::{
    CreateUserError, NewUser, PasswordHash, StoredCredentials, TokenGeneration, User, UserId,
    UserRepository, Username, UsernameKey,
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
        let key = new_user.username.key();
        let row = NewUserRow {
            username: new_user.username.as_ref(),
            username_key: key.as_ref(),
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
            // `username` and `username_key` are the only unique columns
            // besides the generated id; the key is unique whenever the
            // name is.
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
        let key = username.key();
        // The exact name, else the key: of two accounts from before keys
        // existed whose names share one, each still finds its own.
        let rows = with_conn!(self, |conn| users::table
            .filter(
                users::username
                    .eq(username.as_ref())
                    .or(users::username_key.eq(key.as_ref())),
            )
            .select((
                users::id,
                users::username,
                users::password_hash,
                users::token_generation,
            ))
            .limit(2)
            .load::<(i64, String, String, i64)>(conn))?;
        let best = rows
            .iter()
            .find(|row| row.1 == username.as_ref())
            .or(rows.first())
            .cloned();
        best.map(|(id, name, hash, generation)| {
            Ok(StoredCredentials {
                user: user_from_row((id, name))?,
                password_hash: PasswordHash::new(hash),
                token_generation: TokenGeneration(generation),
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

    fn find_user_with_generation(
        &self,
        id: UserId,
    ) -> Result<Option<(User, TokenGeneration)>, RepositoryError> {
        let row = with_conn!(self, |conn| users::table
            .find(id.get())
            .select((users::id, users::username, users::token_generation))
            .first::<(i64, String, i64)>(conn)
            .optional())?;
        row.map(|(id, name, generation)| {
            Ok((user_from_row((id, name))?, TokenGeneration(generation)))
        })
        .transpose()
    }

    fn set_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
    ) -> Result<TokenGeneration, RepositoryError> {
        let generation = with_conn!(self, |conn| diesel::update(users::table.find(id.get()))
            .set((
                users::password_hash.eq(hash.as_ref()),
                users::token_generation.eq(users::token_generation + 1),
            ))
            .returning(users::token_generation)
            .get_result::<i64>(conn))?;
        Ok(TokenGeneration(generation))
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, RepositoryError> {
        // One conditional statement: the row changes only while it still
        // holds the hash that was verified, so a password change committed
        // in between is never overwritten; the token generation is not
        // touched.
        let replaced = with_conn!(self, |conn| diesel::update(
            users::table
                .find(id.get())
                .filter(users::password_hash.eq(old.as_ref()))
        )
        .set(users::password_hash.eq(new.as_ref()))
        .execute(conn))?;
        Ok(replaced == 1)
    }

    fn revoke_tokens(&self, id: UserId) -> Result<TokenGeneration, RepositoryError> {
        let generation = with_conn!(self, |conn| diesel::update(users::table.find(id.get()))
            .set(users::token_generation.eq(users::token_generation + 1))
            .returning(users::token_generation)
            .get_result::<i64>(conn))?;
        Ok(TokenGeneration(generation))
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

impl Database {
    /// Gives every account from before the accounts migration its username
    /// key, in id order. Of two whose names share a key, the older gets it;
    /// the newer keeps none (it still logs in by its exact name) and is
    /// warned about at every start, so an operator can rename it.
    pub(crate) fn fill_username_keys(&self) -> Result<(), RepositoryError> {
        let missing = with_conn!(self, |conn| users::table
            .filter(users::username_key.is_null())
            .order(users::id.asc())
            .select((users::id, users::username))
            .load::<(i64, String)>(conn))?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut taken: HashSet<String> = with_conn!(self, |conn| users::table
            .filter(users::username_key.is_not_null())
            .select(users::username_key.assume_not_null())
            .load::<String>(conn))?
        .into_iter()
        .collect();
        let mut keyed = Vec::new();
        for (id, username) in &missing {
            let key = UsernameKey::of(username);
            if taken.insert(key.as_ref().to_owned()) {
                keyed.push((*id, key));
            } else {
                tracing::warn!(
                    user_id = id,
                    username = %username,
                    key = key.as_ref(),
                    "this account's name differs from an older one's only in case or \
                     width: it still logs in by its exact name, but rename it"
                );
            }
        }
        if !keyed.is_empty() {
            with_conn!(self, |conn| conn.transaction(|conn| {
                for (id, key) in &keyed {
                    diesel::update(users::table.find(id))
                        .set(users::username_key.eq(key.as_ref()))
                        .execute(conn)?;
                }
                Ok(())
            }))?;
            tracing::info!(accounts = keyed.len(), "username keys filled in");
        }
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
