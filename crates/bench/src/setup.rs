//! Setup through the public REST API: register and log in users, create
//! their chats, list chats. Blocking (ureq, no TLS): the calls run on a few
//! plain threads, never on the async executor, and their number bounds how
//! many password hashes the server is asked for at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plan::{pair_users, ChatPlan, PairingError, Participant, Plan};
use crate::target::Target;

/// Every benchmark user's password (the API wants at least 8 characters).
pub const PASSWORD: &str = "bench-password-8+";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{method} {path}: {source}")]
    Transport {
        method: &'static str,
        path: String,
        source: Box<ureq::Error>,
    },
    #[error("{method} {path}: status {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{method} {path}: unexpected reply {body}")]
    Reply {
        method: &'static str,
        path: String,
        body: String,
    },
    #[error(transparent)]
    Pairing(#[from] PairingError),
    #[error("setup stopped after another call failed")]
    Aborted,
}

/// A JSON reply: status, body size and parsed body (`null` if not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub bytes: usize,
    pub body: Value,
}

/// A blocking client of the REST API, cheap to share across threads.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    target: Target,
}

impl Api {
    pub fn new(target: &Target) -> Self {
        let config = ureq::Agent::config_builder()
            // Statuses are checked by the caller, with the body in the error.
            .http_status_as_error(false)
            // The target is this machine; an HTTP_PROXY from the
            // environment must not reroute it.
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(64)
            .build();
        Self {
            agent: config.into(),
            target: target.clone(),
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Result<Reply, SetupError> {
        let mut request = self.agent.get(self.target.http_url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish("GET", path, request.call())
    }

    /// A GET whose reply is not parsed: the status and the body's text (for
    /// timing the request alone).
    pub fn get_text(&self, path: &str, token: Option<&str>) -> Result<(u16, String), SetupError> {
        let mut request = self.agent.get(self.target.http_url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::read("GET", path, request.call())
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Reply, SetupError> {
        let mut request = self
            .agent
            .post(self.target.http_url(path))
            .content_type("application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish("POST", path, request.send(body.to_string()))
    }

    fn read(
        method: &'static str,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), SetupError> {
        let transport = |source| SetupError::Transport {
            method,
            path: path.to_owned(),
            source: Box::new(source),
        };
        let mut response = response.map_err(transport)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(transport)?;
        Ok((status, text))
    }

    fn finish(
        method: &'static str,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, SetupError> {
        let (status, text) = Self::read(method, path, response)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            bytes: text.len(),
            body,
        })
    }

    fn expect(
        reply: Reply,
        method: &'static str,
        path: &str,
        ok: &[u16],
    ) -> Result<Value, SetupError> {
        if ok.contains(&reply.status) {
            Ok(reply.body)
        } else {
            Err(SetupError::Status {
                method,
                path: path.to_owned(),
                status: reply.status,
                body: reply.body.to_string(),
            })
        }
    }

    fn field_i64(body: &Value, pointer: &str, path: &str) -> Result<i64, SetupError> {
        body.pointer(pointer)
            .and_then(Value::as_i64)
            .ok_or_else(|| SetupError::Reply {
                method: "POST",
                path: path.to_owned(),
                body: body.to_string(),
            })
    }

    /// Registers `username`; returns the new user's id.
    pub fn register(&self, username: &str) -> Result<i64, SetupError> {
        let path = "/api/auth/register/";
        let reply = self.post(
            path,
            None,
            &json!({"username": username, "password": PASSWORD}),
        )?;
        let body = Self::expect(reply, "POST", path, &[201])?;
        Self::field_i64(&body, "/id", path)
    }

    /// Logs `username` in.
    pub fn login(&self, username: &str) -> Result<Participant, SetupError> {
        let path = "/api/auth/login/";
        let reply = self.post(
            path,
            None,
            &json!({"username": username, "password": PASSWORD}),
        )?;
        let body = Self::expect(reply, "POST", path, &[200])?;
        let user_id = Self::field_i64(&body, "/user/id", path)?;
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| SetupError::Reply {
                method: "POST",
                path: path.to_owned(),
                body: body.to_string(),
            })?;
        Ok(Participant {
            user_id,
            username: username.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Creates (or finds) the chat of the token's user with `other`.
    pub fn create_chat(&self, token: &str, other: i64) -> Result<i64, SetupError> {
        let path = "/api/chats/create/";
        let reply = self.post(path, Some(token), &json!({"user_id": other}))?;
        let body = Self::expect(reply, "POST", path, &[200, 201])?;
        Self::field_i64(&body, "/id", path)
    }
}

/// Runs `f(0..n)` on `workers` threads; the results in index order, or the
/// first error (the other workers stop taking new items).
pub fn parallel<T, F>(n: usize, workers: usize, f: F) -> Result<Vec<T>, SetupError>
where
    T: Send,
    F: Fn(usize) -> Result<T, SetupError> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let results: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match f(i) {
                        Ok(value) => {
                            if let Ok(mut slot) = results[i].lock() {
                                *slot = Some(value);
                            }
                        }
                        Err(error) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert(error);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = first_error.into_inner().ok().flatten() {
        return Err(error);
    }
    results
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten().ok_or(SetupError::Aborted))
        .collect()
}

/// Usernames unique to this run, so that runs against one server never
/// collide: `b<run>_u<i>`.
pub fn username(run: u64, i: usize) -> String {
    format!("b{run:x}_u{i}")
}

/// Registers and logs in `users` users and creates `chats` chats between
/// distinct pairs of them, `workers` calls in flight.
pub fn pairs(
    api: &Api,
    run: u64,
    users: usize,
    chats: usize,
    workers: usize,
) -> Result<Plan, SetupError> {
    let pairs = pair_users(users, chats)?;
    let started = Instant::now();
    let people = parallel(users, workers, |i| {
        let name = username(run, i);
        api.register(&name)?;
        api.login(&name)
    })?;
    eprintln!(
        "setup: {users} users registered and logged in in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    // Chat creation hashes nothing: more in flight is fine.
    let ids = parallel(chats, workers * 2, |k| {
        let (a, b) = pairs[k];
        api.create_chat(&people[a].token, people[b].user_id)
    })?;
    eprintln!(
        "setup: {chats} chats created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let chats = pairs
        .iter()
        .zip(ids)
        .map(|(&(a, b), id)| ChatPlan {
            id,
            participants: [people[a].clone(), people[b].clone()],
        })
        .collect();
    Ok(Plan { chats, users })
}

/// One user with `chats` chats, one with each of `chats` other users (who
/// are only registered: they never log in). Returns the user and the chat
/// ids.
pub fn hub(
    api: &Api,
    run: u64,
    chats: usize,
    workers: usize,
) -> Result<(Participant, Vec<i64>), SetupError> {
    let started = Instant::now();
    let name = username(run, 0);
    api.register(&name)?;
    let hub = api.login(&name)?;
    let others = parallel(chats, workers, |i| api.register(&username(run, i + 1)))?;
    eprintln!(
        "setup: {} users registered in {:.1} s",
        chats + 1,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let ids = parallel(chats, workers * 2, |i| {
        api.create_chat(&hub.token, others[i])
    })?;
    eprintln!(
        "setup: {chats} chats created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((hub, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_index_order() {
        let squares = parallel(100, 7, |i| Ok(i * i)).unwrap();
        assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(parallel(0, 4, Ok).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn parallel_reports_the_first_error() {
        let result = parallel(50, 4, |i| {
            if i == 10 {
                Err(SetupError::Aborted)
            } else {
                Ok(i)
            }
        });
        assert!(matches!(result, Err(SetupError::Aborted)));
    }

    #[test]
    fn usernames_are_valid_for_the_api() {
        let name = username(0xdead_beef, 42);
        assert_eq!(name, "bdeadbeef_u42");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
