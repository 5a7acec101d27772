//! Request and response bodies, exactly as `seed-api.md` and `CONTRACT.md`
//! spell them. Domain types never (de)serialize themselves.

use chat_domain::chat::{ChatSummary, DirectMessage};
use chat_domain::user::{LoginSuccess, User, UserId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// `created` in REST bodies: RFC 3339, UTC, `Z` suffix.
pub fn rest_timestamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An account as others see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserDto<'a> {
    pub id: i64,
    pub username: &'a str,
}

impl<'a> From<&'a User> for UserDto<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            id: user.id.get(),
            username: user.username.as_ref(),
        }
    }
}

/// The newest message of a chat, in a chat listing.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LastMessage)]
pub struct LastMessageDto<'a> {
    pub body: &'a str,
    /// RFC 3339, UTC, seconds, `Z` suffix.
    #[schema(format = DateTime, example = "2025-05-01T12:00:00Z")]
    pub created: String,
    /// The sender's username.
    pub sender: &'a str,
}

impl<'a> From<&'a DirectMessage> for LastMessageDto<'a> {
    fn from(message: &'a DirectMessage) -> Self {
        Self {
            body: &message.body,
            created: rest_timestamp(&message.created),
            sender: message.sender.username.as_ref(),
        }
    }
}

/// A direct chat as one of its two participants sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Chat)]
pub struct ChatDto<'a> {
    pub id: i64,
    /// Both participants, in id order.
    pub participants: Vec<UserDto<'a>>,
    /// The participant who is not the caller.
    pub other_user: UserDto<'a>,
    /// RFC 3339, UTC, seconds, `Z` suffix.
    #[schema(format = DateTime, example = "2025-05-01T12:00:00Z")]
    pub created: String,
    /// `null` while the chat has no message.
    #[schema(required = true)]
    pub last_message: Option<LastMessageDto<'a>>,
    /// Messages from the other participant the caller has not read.
    pub unread_count: u64,
}

impl<'a> ChatDto<'a> {
    /// The chat as `viewer` (one of its participants) sees it.
    pub fn for_viewer(summary: &'a ChatSummary, viewer: UserId) -> Result<Self, ApiError> {
        let chat = &summary.chat;
        let other = chat.participants.other_than(viewer).ok_or_else(|| {
            ApiError::internal(format!("user {viewer} is not in chat {}", chat.id))
        })?;
        Ok(Self {
            id: chat.id.get(),
            participants: chat
                .participants
                .users()
                .iter()
                .map(UserDto::from)
                .collect(),
            other_user: other.into(),
            created: rest_timestamp(&chat.created),
            last_message: summary.last_message.as_ref().map(LastMessageDto::from),
            unread_count: summary.unread_count,
        })
    }
}

/// A username and password, to register or to log in.
#[derive(Deserialize, ToSchema)]
#[schema(as = Credentials)]
pub struct CredentialsRequest {
    pub username: String,
    pub password: String,
}

// By hand, so that no log line can ever show a password.
impl std::fmt::Debug for CredentialsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The caller's current password and the one to replace it.
#[derive(Deserialize, ToSchema)]
#[schema(as = PasswordChange)]
pub struct PasswordChangeRequest {
    pub current_password: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChangeRequest(<redacted>)")
    }
}

/// A bearer token for `Authorization: Bearer <token>` (or `?token=` on a
/// socket URL) and the account it belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Login)]
pub struct LoginResponse<'a> {
    pub token: &'a str,
    pub user: UserDto<'a>,
}

impl<'a> From<&'a LoginSuccess> for LoginResponse<'a> {
    fn from(success: &'a LoginSuccess) -> Self {
        Self {
            token: success.token.as_ref(),
            user: (&success.user).into(),
        }
    }
}

/// The other participant of a chat to start.
// `{"user_id": 2}`: a JSON integer; anything else is a `400` saying why.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateChat)]
pub struct CreateChatRequest {
    /// The other participant's user id.
    #[serde(default)]
    #[schema(value_type = i64, required = true)]
    pub user_id: Option<serde_json::Value>,
}

impl CreateChatRequest {
    pub fn try_into_domain(self) -> Result<UserId, ApiError> {
        let invalid = || ApiError::BadRequest("user_id must be an integer user id".into());
        match self.user_id {
            None | Some(serde_json::Value::Null) => {
                Err(ApiError::BadRequest("user_id is required".into()))
            }
            Some(serde_json::Value::Number(n)) => n.as_i64().map(UserId::new).ok_or_else(invalid),
            Some(_) => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn user_id(body: serde_json::Value) -> Result<UserId, String> {
        serde_json::from_value::<CreateChatRequest>(body)
            .map_err(|e| e.to_string())?
            .try_into_domain()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn user_id_is_a_json_integer() {
        assert_eq!(user_id(json!({"user_id": 2})), Ok(UserId::new(2)));
    }

    #[test]
    fn user_id_that_is_missing_or_not_an_integer_is_rejected() {
        assert_eq!(user_id(json!({})), Err("user_id is required".into()));
        assert_eq!(
            user_id(json!({"user_id": null})),
            Err("user_id is required".into())
        );
        for bad in [
            json!(2.5),
            json!("two"),
            json!(true),
            json!([2]),
            json!({"id": 2}),
            json!(1e300),
        ] {
            assert!(user_id(json!({ "user_id": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn rest_timestamps_are_rfc3339_utc_with_z() {
        let time = Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap();
        assert_eq!(rest_timestamp(&time), "2025-05-01T12:00:00Z");
    }
}
