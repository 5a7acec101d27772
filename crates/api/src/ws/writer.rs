//! The message writer: one thread that stores messages in batches.
//!
//! Sessions hand it validated messages and await the outcome without
//! holding a thread. The writer takes everything queued (up to the batch
//! limit) and stores it with `MessageService::send_batch`: one transaction,
//! one commit, then each message is broadcast. Under load batches grow, so
//! the fixed cost of a durable commit (the fsync) is shared by many
//! messages; with one message queued it is stored alone, at once. One
//! writer also means writes never contend with each other for the
//! database, while reads use the other pooled connections.

use std::sync::Arc;

use chat_domain::chat::{MessageBody, MessageService, OpenChat};
use chat_domain::RepositoryError;
use tokio::sync::{mpsc, oneshot};

use crate::error::error_chain;

/// Why a message was not stored; said to its sender in the error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    #[error("the message could not be stored right now; try again")]
    Unavailable,
    #[error("the message could not be stored")]
    Failed,
}

struct Submission {
    chat: Arc<OpenChat>,
    body: MessageBody,
    outcome: oneshot::Sender<Result<(), StoreFailure>>,
}

/// A handle to the writer thread; cheap to clone. The thread stops, after
/// storing everything already queued, when the last handle is dropped.
#[derive(Clone)]
pub struct MessageWriter {
    queue: mpsc::Sender<Submission>,
}

impl MessageWriter {
    /// Starts the writer thread. `queue` bounds the messages waiting to be
    /// stored (senders wait beyond it); `max_batch` bounds one transaction.
    ///
    /// Join the returned thread at shutdown, after the last handle is gone,
    /// so queued messages are stored and its database connection closed
    /// before the process exits.
    pub fn start(
        messages: MessageService,
        queue: usize,
        max_batch: usize,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("message-writer".into())
            .spawn(move || write_batches(&messages, receiver, max_batch.max(1)))?;
        Ok((Self { queue: sender }, thread))
    }

    /// Stores `body` in `chat`; returns once it is committed and broadcast
    /// (or failed). The sender's acknowledgement is its copy of the
    /// broadcast, not this return.
    pub async fn store(&self, chat: Arc<OpenChat>, body: MessageBody) -> Result<(), StoreFailure> {
        let (outcome, result) = oneshot::channel();
        self.queue
            .send(Submission {
                chat,
                body,
                outcome,
            })
            .await
            .map_err(|_| StoreFailure::Failed)?;
        result.await.unwrap_or(Err(StoreFailure::Failed))
    }
}

fn write_batches(
    messages: &MessageService,
    mut queue: mpsc::Receiver<Submission>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        store_batch(messages, &mut batch);
    }
    tracing::debug!("message writer stopped");
}

/// Stores and answers every submission of `batch`, leaving it empty.
fn store_batch(messages: &MessageService, batch: &mut Vec<Submission>) {
    // Bodies are cloned (not moved) so a failed batch can be retried one
    // message at a time below.
    let items = batch.iter().map(|s| (&*s.chat, s.body.clone())).collect();
    match messages.send_batch(items) {
        Ok(_) => {
            for submission in batch.drain(..) {
                let _ = submission.outcome.send(Ok(()));
            }
        }
        // The store is down: every message of the batch fails alike.
        Err(error @ RepositoryError::Unavailable(_)) => {
            tracing::error!(error = %error_chain(&error), messages = batch.len(), "storing messages failed");
            for submission in batch.drain(..) {
                let _ = submission.outcome.send(Err(StoreFailure::Unavailable));
            }
        }
        // One bad message must not sink the others: store them one by one.
        Err(error) if batch.len() > 1 => {
            tracing::warn!(error = %error_chain(&error), messages = batch.len(), "batch failed, storing one by one");
            for submission in batch.drain(..) {
                let outcome = messages
                    .send_batch(vec![(&*submission.chat, submission.body)])
                    .map(drop)
                    .map_err(|error| {
                        tracing::error!(error = %error_chain(&error), "storing a message failed");
                        failure_of(&error)
                    });
                let _ = submission.outcome.send(outcome);
            }
        }
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "storing a message failed");
            for submission in batch.drain(..) {
                let _ = submission.outcome.send(Err(failure_of(&error)));
            }
        }
    }
}

fn failure_of(error: &RepositoryError) -> StoreFailure {
    match error {
        RepositoryError::Unavailable(_) => StoreFailure::Unavailable,
        RepositoryError::Unexpected(_) => StoreFailure::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::chat::{
        ChatId, ChatService, DirectChat, DirectMessage, MessageId, MessageLimit, MockBroadcaster,
        MockChatRepository, MockMessageRepository, NewMessage, Participants,
    };
    use chat_domain::user::{MockUserRepository, User, UserId, Username};
    use chrono::Utc;
    use std::sync::Mutex;
    use std::time::Duration;

    fn user(id: i64, name: &str) -> User {
        User {
            id: UserId::new(id),
            username: Username::parse(name).unwrap(),
        }
    }

    fn open_chat() -> Arc<OpenChat> {
        let mut chats = MockChatRepository::new();
        chats.expect_find_chat().returning(|_| {
            Ok(Some(DirectChat {
                id: ChatId::new(1),
                participants: Participants::new(user(1, "alice"), user(2, "bob")).unwrap(),
                created: Utc::now(),
            }))
        });
        let service = ChatService::new(Arc::new(MockUserRepository::new()), Arc::new(chats));
        Arc::new(service.open_chat(user(1, "alice"), ChatId::new(1)).unwrap())
    }

    fn stored(messages: &[NewMessage]) -> Vec<DirectMessage> {
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| DirectMessage {
                id: MessageId::new(i as i64 + 1),
                chat_id: m.chat_id,
                sender: m.sender.clone(),
                body: m.body.as_ref().to_owned(),
                created: Utc::now(),
                is_read: false,
            })
            .collect()
    }

    fn service_with(repository: MockMessageRepository) -> MessageService {
        let mut broadcaster = MockBroadcaster::new();
        broadcaster.expect_broadcast().return_const(());
        MessageService::new(
            Arc::new(repository),
            Arc::new(broadcaster),
            MessageLimit::DEFAULT,
        )
    }

    #[tokio::test]
    async fn messages_queued_during_a_slow_commit_share_the_next_one() {
        let batch_sizes = Arc::new(Mutex::new(Vec::new()));
        let sizes = batch_sizes.clone();
        let mut repository = MockMessageRepository::new();
        repository
            .expect_insert_messages()
            .returning(move |messages| {
                sizes.lock().unwrap().push(messages.len());
                // A slow fsync: everything sent meanwhile queues up.
                std::thread::sleep(Duration::from_millis(50));
                Ok(stored(messages))
            });
        let service = service_with(repository);
        let (writer, _) = MessageWriter::start(service.clone(), 1000, 512).unwrap();
        let chat = open_chat();

        let sends = (0..100).map(|i| {
            let (writer, chat, body) = (
                writer.clone(),
                chat.clone(),
                service.validate(&format!("m{i}")).unwrap(),
            );
            async move { writer.store(chat, body).await }
        });
        let outcomes = futures_util::future::join_all(sends).await;

        assert!(outcomes.iter().all(Result::is_ok));
        let sizes = batch_sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(
            sizes.len() <= 3,
            "100 messages took {} commits: {sizes:?}",
            sizes.len()
        );
    }

    #[tokio::test]
    async fn one_bad_message_fails_alone() {
        let mut repository = MockMessageRepository::new();
        repository.expect_insert_messages().returning(|messages| {
            std::thread::sleep(Duration::from_millis(20));
            if messages.iter().any(|m| m.body.as_ref() == "bad") {
                Err(RepositoryError::unexpected("constraint violated"))
            } else {
                Ok(stored(messages))
            }
        });
        let service = service_with(repository);
        let (writer, _) = MessageWriter::start(service.clone(), 1000, 512).unwrap();
        let chat = open_chat();

        let sends = ["a", "b", "bad", "c"].map(|body| {
            let (writer, chat, body) = (
                writer.clone(),
                chat.clone(),
                service.validate(body).unwrap(),
            );
            async move { writer.store(chat, body).await }
        });
        let outcomes = futures_util::future::join_all(sends).await;

        assert_eq!(
            outcomes,
            [Ok(()), Ok(()), Err(StoreFailure::Failed), Ok(())]
        );
    }

    #[tokio::test]
    async fn an_unavailable_store_is_reported_as_such() {
        let mut repository = MockMessageRepository::new();
        repository
            .expect_insert_messages()
            .returning(|_| Err(RepositoryError::unavailable("connection refused")));
        let service = service_with(repository);
        let (writer, _) = MessageWriter::start(service.clone(), 10, 10).unwrap();

        let outcome = writer
            .store(open_chat(), service.validate("hi").unwrap())
            .await;

        assert_eq!(outcome, Err(StoreFailure::Unavailable));
    }
}
