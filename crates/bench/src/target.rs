//! The server under test: its base URL, resolved once, and the safety rule
//! that a load generator only aims at this machine unless told otherwise.

use std::net::{SocketAddr, ToSocketAddrs as _};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the URL must look like http://host:port (no TLS, no path): {0:?}")]
    Malformed(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("{host} resolves to {addr}, which is not loopback; pass --allow-remote to load another machine")]
    NotLoopback { host: String, addr: SocketAddr },
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as given (used in URLs and the Host header).
    pub authority: String,
    /// The address connections are made to.
    pub addr: SocketAddr,
    /// A second instance of a cluster, for every chat's second participant.
    pub second: Option<Box<Target>>,
}

impl Target {
    /// Parses `http://host[:port][/]` and resolves it. Only loopback
    /// addresses are accepted unless `allow_remote`.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Self, TargetError> {
        let malformed = || TargetError::Malformed(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(malformed)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(malformed());
        }
        let with_port = if authority.rsplit_once(':').is_some_and(|(h, p)| {
            !h.ends_with(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve(with_port.clone(), e))?
            .collect();
        // Prefer IPv4: source-address spreading uses 127.0.0.x.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| {
                TargetError::Resolve(with_port.clone(), std::io::ErrorKind::NotFound.into())
            })?;
        if !allow_remote {
            if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(TargetError::NotLoopback {
                    host: authority.to_owned(),
                    addr: *remote,
                });
            }
        }
        Ok(Self {
            authority: with_port,
            addr,
            second: None,
        })
    }

    /// A target for tests: a known loopback address.
    pub fn local(addr: SocketAddr) -> Self {
        Self {
            authority: addr.to_string(),
            addr,
            second: None,
        }
    }

    /// Sends every chat's second participant (odd connections) to `second`.
    pub fn with_second_instance(mut self, second: Target) -> Self {
        self.second = Some(Box::new(second));
        self
    }

    /// Where connection `conn`'s socket goes.
    pub fn for_conn(&self, conn: usize) -> &Target {
        match &self.second {
            Some(second) if conn % 2 == 1 => second,
            _ => self,
        }
    }

    /// The REST URL of `path` (which starts with `/`).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority)
    }

    /// The chat socket's URL, token in the query (the browser form).
    pub fn ws_url(&self, chat_id: i64, token: &str) -> String {
        format!("ws://{}/ws/chat/{chat_id}/?token={token}", self.authority)
    }

    /// The protocol-v2 socket's URL: one per user, whatever the chat.
    pub fn ws_v2_url(&self, token: &str) -> String {
        format!("ws://{}/ws/v2/?token={token}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_url_is_accepted_and_resolved() {
        let t = Target::parse("http://127.0.0.1:8000", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(
            t.http_url("/api/chats/"),
            "http://127.0.0.1:8000/api/chats/"
        );
        assert_eq!(
            t.ws_url(5, "abc"),
            "ws://127.0.0.1:8000/ws/chat/5/?token=abc"
        );
        assert_eq!(t.ws_v2_url("abc"), "ws://127.0.0.1:8000/ws/v2/?token=abc");
        let t = Target::parse("http://localhost/", false).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(t.addr.ip().is_loopback());
    }

    #[test]
    fn other_machines_need_allow_remote() {
        let refused = Target::parse("http://192.0.2.1:8000", false);
        assert!(matches!(refused, Err(TargetError::NotLoopback { .. })));
        assert!(Target::parse("http://192.0.2.1:8000", true).is_ok());
    }

    #[test]
    fn tls_and_paths_are_refused() {
        for url in [
            "https://127.0.0.1",
            "127.0.0.1:8000",
            "http://127.0.0.1:8000/api",
            "http://",
        ] {
            assert!(
                matches!(Target::parse(url, false), Err(TargetError::Malformed(_))),
                "{url}"
            );
        }
    }
}
