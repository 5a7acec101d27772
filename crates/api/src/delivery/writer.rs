//! The message writer: one thread that stores messages in batches.
//!
//! Sessions and REST handlers hand it validated messages and await the
//! outcome without holding a thread. The writer takes everything queued (up
//! to the batch limit) and stores it with `MessageService::send_batch`: one
//! transaction, one commit, then each new message is published. Under load
//! batches grow, so the fixed cost of a durable commit (the fsync) is
//! shared by many messages; with one message queued it is stored alone, at
//! once. One writer also means writes never contend with each other for
//! the database, while reads use the other pooled connections.

use std::sync::Arc;
use std::time::Instant;

use chat_domain::chat::{ChatId, MessageService, Outgoing, SendOutcome};
use chat_domain::RepositoryError;
use tokio::sync::{mpsc, oneshot};

use crate::error::error_chain;
use crate::metrics::Metrics;

/// Why a message was not stored; said to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    #[error("the message could not be stored right now; try again")]
    Unavailable,
    #[error("the message could not be stored")]
    Failed,
}

/// The outcome of one message, once its batch is done.
pub type Stored = Result<SendOutcome, StoreFailure>;

struct Submission {
    message: Outgoing,
    outcome: oneshot::Sender<Stored>,
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
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("message-writer".into())
            .spawn(move || write_batches(&messages, receiver, max_batch.max(1), &metrics))?;
        Ok((Self { queue: sender }, thread))
    }

    /// Stores `message`; returns once it is committed and published (or
    /// failed).
    pub async fn store(&self, message: Outgoing) -> Stored {
        match self.submit(message).await {
            Ok(outcome) => outcome.await.unwrap_or(Err(StoreFailure::Failed)),
            Err(failure) => Err(failure),
        }
    }

    /// Queues `message` and returns at once with where its outcome will
    /// arrive. Messages are stored in the order they were submitted, so a
    /// connection can submit several without waiting for each commit.
    pub async fn submit(
        &self,
        message: Outgoing,
    ) -> Result<oneshot::Receiver<Stored>, StoreFailure> {
        let (outcome, result) = oneshot::channel();
        self.queue
            .send(Submission { message, outcome })
            .await
            .map_err(|_| StoreFailure::Failed)?;
        Ok(result)
    }
}

fn write_batches(
    messages: &MessageService,
    mut queue: mpsc::Receiver<Submission>,
    max_batch: usize,
    metrics: &Metrics,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // Left for the next batch: their chats were being written by another
    // instance's writer (a shared PostgreSQL). They go first, and are
    // waited for then, so each is left out once at most.
    let mut left: Vec<Submission> = Vec::new();
    loop {
        let waited = left.len();
        if left.is_empty() {
            match queue.blocking_recv() {
                Some(first) => batch.push(first),
                None => break,
            }
        } else {
            batch.append(&mut left);
        }
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        store_batch(messages, &mut batch, waited, &mut left, metrics);
    }
    tracing::debug!("message writer stopped");
}

/// Stores and answers every submission of `batch`, leaving it empty; the
/// chats of its first `waited` are waited for, the messages of other chats
/// busy elsewhere go to `left`, in order.
fn store_batch(
    messages: &MessageService,
    batch: &mut Vec<Submission>,
    waited: usize,
    left: &mut Vec<Submission>,
    metrics: &Metrics,
) {
    let outgoing: Vec<Outgoing> = batch.iter().map(|s| s.message.clone()).collect();
    let wait_for: Vec<ChatId> = outgoing[..waited].iter().map(|m| m.chat.id()).collect();
    let started = Instant::now();
    match messages.send_batch_skipping_busy(&outgoing, &wait_for) {
        Ok(outcomes) => {
            record_commit(metrics, &outcomes, started);
            for (submission, outcome) in batch.drain(..).zip(outcomes) {
                match outcome {
                    Some(outcome) => {
                        let _ = submission.outcome.send(Ok(outcome));
                    }
                    None => left.push(submission),
                }
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
                let started = Instant::now();
                let outcome = messages
                    .send_batch(std::slice::from_ref(&submission.message))
                    .inspect(|outcomes| {
                        let outcomes: Vec<_> = outcomes.iter().cloned().map(Some).collect();
                        record_commit(metrics, &outcomes, started);
                    })
                    .map_err(|error| {
                        tracing::error!(error = %error_chain(&error), "storing a message failed");
                        failure_of(&error)
                    })
                    .and_then(|mut outcomes| outcomes.pop().ok_or(StoreFailure::Failed));
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

/// One commit's size, time and outcomes (`None`: left for the next batch).
/// The time includes publishing, which only queues for the fan-out thread.
fn record_commit(metrics: &Metrics, outcomes: &[Option<SendOutcome>], started: Instant) {
    let committed = outcomes.iter().flatten().count();
    if committed == 0 {
        return;
    }
    let stored = outcomes
        .iter()
        .flatten()
        .filter(|o| matches!(o, SendOutcome::Stored(_)))
        .count();
    let duplicates = outcomes
        .iter()
        .flatten()
        .filter(|o| matches!(o, SendOutcome::Duplicate(_)))
        .count();
    metrics.committed(committed, stored, duplicates, started.elapsed());
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
        ChatId, ChatService, DirectChat, DirectMessage, Inserted, MessageId, MessageLimit,
        MockBroadcaster, MockChatRepository, MockMessageRepository, NewMessage, OpenChat,
        Participants, Seq,
    };
    use chat_domain::user::{MockUserRepository, User, UserId, Username};
    use chrono::Utc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn user(id: i64, name: &str) -> User {
        User {
            id: UserId::new(id),
            username: Username::parse(name).unwrap(),
        }
    }

    fn open_chat() -> Arc<OpenChat> {
        open_chat_of(1)
    }

    fn open_chat_of(id: i64) -> Arc<OpenChat> {
        let mut chats = MockChatRepository::new();
        chats.expect_find_chat().returning(move |_| {
            Ok(Some(DirectChat {
                id: ChatId::new(id),
                participants: Participants::new(user(1, "alice"), user(2, "bob")).unwrap(),
                created: Utc::now(),
            }))
        });
        let service = ChatService::new(
            Arc::new(MockUserRepository::new()),
            Arc::new(chats),
            Arc::new(MockBroadcaster::new()),
        );
        Arc::new(
            service
                .open_chat(user(1, "alice"), ChatId::new(id))
                .unwrap(),
        )
    }

    /// Both insert methods answer with `insert`: the writer uses the one
    /// that may leave busy chats out, this store never does.
    fn answer_inserts(
        repository: &mut MockMessageRepository,
        insert: impl Fn(&[NewMessage]) -> Result<Vec<Inserted>, RepositoryError>
            + Send
            + Sync
            + Clone
            + 'static,
    ) {
        let again = insert.clone();
        repository
            .expect_insert_messages()
            .returning(move |messages| insert(messages));
        repository
            .expect_insert_messages_skipping_busy()
            .returning(move |messages, _| {
                again(messages).map(|stored| stored.into_iter().map(Some).collect())
            });
    }

    fn stored(messages: &[NewMessage]) -> Vec<Inserted> {
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Inserted::New(DirectMessage {
                    id: MessageId::new(i as i64 + 1),
                    chat_id: m.chat_id,
                    seq: Seq::new(i as i64 + 1).unwrap(),
                    sender: m.sender.clone(),
                    body: m.body.as_ref().to_owned(),
                    created: Utc::now(),
                    client_id: m.client_id.clone(),
                })
            })
            .collect()
    }

    fn service_with(repository: MockMessageRepository) -> MessageService {
        let mut broadcaster = MockBroadcaster::new();
        broadcaster.expect_publish().return_const(());
        MessageService::new(
            Arc::new(repository),
            Arc::new(broadcaster),
            MessageLimit::DEFAULT,
        )
    }

    fn outgoing(service: &MessageService, chat: &Arc<OpenChat>, body: &str) -> Outgoing {
        Outgoing {
            chat: chat.clone(),
            body: service.validate(body).unwrap(),
            client_id: None,
            origin: None,
        }
    }

    #[tokio::test]
    async fn messages_queued_during_a_slow_commit_share_the_next_one() {
        let batch_sizes = Arc::new(Mutex::new(Vec::new()));
        let sizes = batch_sizes.clone();
        let mut repository = MockMessageRepository::new();
        answer_inserts(&mut repository, move |messages| {
            sizes.lock().unwrap().push(messages.len());
            // A slow fsync: everything sent meanwhile queues up.
            std::thread::sleep(Duration::from_millis(50));
            Ok(stored(messages))
        });
        let service = service_with(repository);
        let (writer, _) =
            MessageWriter::start(service.clone(), 1000, 512, Arc::new(Metrics::new())).unwrap();
        let chat = open_chat();

        let sends = (0..100).map(|i| {
            let (writer, message) = (writer.clone(), outgoing(&service, &chat, &format!("m{i}")));
            async move { writer.store(message).await }
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
        answer_inserts(&mut repository, |messages| {
            std::thread::sleep(Duration::from_millis(20));
            if messages.iter().any(|m| m.body.as_ref() == "bad") {
                Err(RepositoryError::unexpected("constraint violated"))
            } else {
                Ok(stored(messages))
            }
        });
        let service = service_with(repository);
        let (writer, _) =
            MessageWriter::start(service.clone(), 1000, 512, Arc::new(Metrics::new())).unwrap();
        let chat = open_chat();

        let sends = ["a", "b", "bad", "c"].map(|body| {
            let (writer, message) = (writer.clone(), outgoing(&service, &chat, body));
            async move { writer.store(message).await.map(|_| ()) }
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
        answer_inserts(&mut repository, |_| {
            Err(RepositoryError::unavailable("connection refused"))
        });
        let service = service_with(repository);
        let (writer, _) =
            MessageWriter::start(service.clone(), 10, 10, Arc::new(Metrics::new())).unwrap();

        let outcome = writer.store(outgoing(&service, &open_chat(), "hi")).await;

        assert_eq!(outcome, Err(StoreFailure::Unavailable));
    }

    #[tokio::test]
    async fn submitted_messages_are_stored_in_the_order_submitted() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = order.clone();
        let mut repository = MockMessageRepository::new();
        answer_inserts(&mut repository, move |messages| {
            seen.lock()
                .unwrap()
                .extend(messages.iter().map(|m| m.body.as_ref().to_owned()));
            Ok(stored(messages))
        });
        let service = service_with(repository);
        let (writer, _) =
            MessageWriter::start(service.clone(), 1000, 7, Arc::new(Metrics::new())).unwrap();
        let chat = open_chat();

        let mut pending = Vec::new();
        for i in 0..50 {
            pending.push(
                writer
                    .submit(outgoing(&service, &chat, &i.to_string()))
                    .await
                    .unwrap(),
            );
        }
        for outcome in pending {
            assert!(outcome.await.unwrap().is_ok());
        }

        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(*order.lock().unwrap(), expected);
    }

    #[tokio::test]
    async fn messages_of_a_chat_busy_elsewhere_go_first_in_the_next_batch_and_are_waited_for() {
        // Chat 2 is being written by another instance the first time a batch
        // carries it: its messages are left out; the next call must wait for
        // chat 2 and carry them first, in order, before anything newer. The
        // writer thread may cut batches anywhere (it takes what has arrived),
        // so the assertions follow whichever call met chat 2 first.
        let calls = Arc::new(Mutex::new(Vec::<(Vec<String>, Vec<ChatId>)>::new()));
        let seen = calls.clone();
        let mut chat_two_refused = false;
        let mut repository = MockMessageRepository::new();
        repository
            .expect_insert_messages_skipping_busy()
            .returning(move |messages, wait_for| {
                seen.lock().unwrap().push((
                    messages
                        .iter()
                        .map(|m| m.body.as_ref().to_owned())
                        .collect(),
                    wait_for.to_vec(),
                ));
                let refuse =
                    !chat_two_refused && messages.iter().any(|m| m.chat_id == ChatId::new(2));
                chat_two_refused |= refuse;
                std::thread::sleep(Duration::from_millis(20));
                Ok(stored(messages)
                    .into_iter()
                    .zip(messages)
                    .map(|(inserted, m)| {
                        (!(refuse && m.chat_id == ChatId::new(2))).then_some(inserted)
                    })
                    .collect())
            });
        let service = service_with(repository);
        let (writer, _) =
            MessageWriter::start(service.clone(), 1000, 512, Arc::new(Metrics::new())).unwrap();
        let (one, two) = (open_chat_of(1), open_chat_of(2));

        let mut pending = Vec::new();
        for (chat, body) in [(&one, "1a"), (&two, "2a"), (&one, "1b"), (&two, "2b")] {
            let message = outgoing(&service, chat, body);
            pending.push(writer.submit(message).await.unwrap());
        }
        for outcome in pending {
            assert!(matches!(outcome.await.unwrap(), Ok(SendOutcome::Stored(_))));
        }

        let calls = calls.lock().unwrap().clone();
        let refused_in = calls
            .iter()
            .position(|(bodies, _)| bodies.iter().any(|b| b.starts_with('2')))
            .expect("chat 2 was written");
        let left_out: Vec<String> = calls[refused_in]
            .0
            .iter()
            .filter(|b| b.starts_with('2'))
            .cloned()
            .collect();
        let retry = calls.get(refused_in + 1).expect("a retry call");
        assert_eq!(retry.0[..left_out.len()], left_out[..], "{calls:?}");
        assert_eq!(retry.1, vec![ChatId::new(2); left_out.len()], "{calls:?}");
        assert!(calls[..=refused_in].iter().all(|(_, wait)| wait.is_empty()));

        // Every message stored once, each chat's in the order submitted.
        let stored_order: Vec<&String> = calls
            .iter()
            .enumerate()
            .flat_map(|(i, (bodies, _))| {
                bodies
                    .iter()
                    .filter(move |b| i != refused_in || !b.starts_with('2'))
            })
            .collect();
        for chat in ['1', '2'] {
            let of_chat: Vec<&str> = stored_order
                .iter()
                .filter(|b| b.starts_with(chat))
                .map(|b| b.as_str())
                .collect();
            assert_eq!(
                of_chat,
                [format!("{chat}a"), format!("{chat}b")],
                "{calls:?}"
            );
        }
    }
}
