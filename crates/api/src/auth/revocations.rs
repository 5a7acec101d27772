//! Revoked tokens and the sockets still open with them.
//!
//! A password change or a logout moves the user's token generation on in
//! the database, which every later request and handshake checks. Sockets
//! authenticated earlier hear of it here: each session waits on
//! [`SessionRevoked`] and closes with `4001` when its user's generation
//! passes the one its token carries. In a cluster the relay carries the
//! announcement to the other instances. Revocations are rare, so every
//! socket hears all of them and ignores other users'; a session that
//! missed some (it lagged, or the relay was cut off from Redis and asks
//! for a recheck) asks the database, which is the truth.

use std::future::Future;

use chat_domain::user::{AuthService, TokenGeneration, UserId};
use tokio::sync::broadcast;

/// How many announcements a lagging session may miss before it must ask
/// the database instead.
const BACKLOG: usize = 256;

/// `user`'s tokens below `generation` are no longer valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub user: UserId,
    pub generation: TokenGeneration,
}

#[derive(Debug, Clone, Copy)]
enum Notice {
    Revoked(Revoked),
    /// Some revocations may have been missed: ask the database.
    Recheck,
}

/// Where revocations are announced to this instance's sessions.
#[derive(Clone)]
pub struct Revocations {
    sender: broadcast::Sender<Notice>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Revocations {
    /// Tells every session here (without waiting; no session is a reason
    /// not to announce).
    pub fn announce(&self, revoked: Revoked) {
        let _ = self.sender.send(Notice::Revoked(revoked));
    }

    /// Tells every session to compare its generation with the database's
    /// (the relay, after Redis was unreachable: another instance's
    /// announcements of that time are lost).
    pub fn recheck(&self) {
        let _ = self.sender.send(Notice::Recheck);
    }

    /// Completes when the token a session was opened with (issued to
    /// `user` at `generation`) has been revoked; never otherwise.
    pub fn session_revoked(
        &self,
        auth: AuthService,
        user: UserId,
        generation: TokenGeneration,
    ) -> impl Future<Output = ()> + 'static {
        let mut announcements = self.sender.subscribe();
        async move {
            loop {
                let must_ask = match announcements.recv().await {
                    Ok(Notice::Revoked(revoked)) => {
                        if revoked.user == user && revoked.generation > generation {
                            return;
                        }
                        false
                    }
                    Ok(Notice::Recheck) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => {
                        return std::future::pending::<()>().await;
                    }
                };
                if must_ask && still_valid(&auth, user, generation).await == Some(false) {
                    return;
                }
            }
        }
    }
}

/// Whether `user`'s tokens of `generation` are still valid, from the
/// database; `None` when it cannot say (the socket is kept: its next
/// announcement or request decides).
async fn still_valid(
    auth: &AuthService,
    user: UserId,
    generation: TokenGeneration,
) -> Option<bool> {
    let auth = auth.clone();
    match tokio::task::spawn_blocking(move || auth.current_generation(user)).await {
        Ok(Ok(current)) => Some(current == Some(generation)),
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot check a socket's token generation");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "cannot check a socket's token generation");
            None
        }
    }
}
