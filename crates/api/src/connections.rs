//! How many connections one client address may hold before it
//! authenticates. Headers, bodies and idle keep-alives each have a timeout,
//! but without this one address could still hold thousands of connections
//! at once, each within its timeouts, and use up the server's file
//! descriptors for everyone.
//!
//! Every accepted connection takes a place for its address
//! ([`PreAuthLimits::on_connect`]); a connection beyond the address's
//! limit may only carry requests with credentials (`Authorization` or
//! `?token=`), and is closed after any answer that is not a success. A
//! request with credentials that succeeds gives its connection's place
//! back: signed-in clients are limited per user instead (sockets per user,
//! message rate).

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::HttpResponse;

use crate::error::ErrorBody;

/// Places per client address, shared by the server's workers.
#[derive(Clone)]
pub struct PreAuthLimits {
    inner: Arc<Places>,
}

struct Places {
    /// 0: no limit.
    per_address: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place, kept in the connection's extensions: dropped
/// (and the place given back) when the connection closes.
pub struct ConnectionPlace {
    limits: PreAuthLimits,
    address: IpAddr,
    /// Accepted beyond the address's limit.
    over_limit: bool,
    /// The place was given back: a request with credentials succeeded.
    released: AtomicBool,
}

impl PreAuthLimits {
    pub fn new(per_address: usize) -> Self {
        Self {
            inner: Arc::new(Places {
                per_address,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// For `HttpServer::on_connect`: takes a place for the connection's
    /// address.
    pub fn on_connect(&self, connection: &dyn Any, extensions: &mut Extensions) {
        if self.inner.per_address == 0 {
            return;
        }
        let Some(address) = connection
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.peer_addr().ok())
            .map(|peer| peer.ip())
        else {
            return;
        };
        let mut held = self.held();
        let count = held.entry(address).or_default();
        *count += 1;
        let over_limit = *count > self.inner.per_address;
        drop(held);
        extensions.insert(Arc::new(ConnectionPlace {
            limits: self.clone(),
            address,
            over_limit,
            released: AtomicBool::new(false),
        }));
    }

    /// Connections `address` holds now without having authenticated.
    pub fn held_by(&self, address: IpAddr) -> usize {
        self.held().get(&address).copied().unwrap_or(0)
    }

    fn give_back(&self, address: IpAddr) {
        let mut held = self.held();
        if let Some(count) = held.get_mut(&address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&address);
            }
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every update is complete before the lock is released.
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionPlace {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.limits.give_back(self.address);
        }
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        self.release();
    }
}

/// Middleware: refuses a connection beyond its address's limit unless the
/// request carries credentials; gives the place back once a request with
/// credentials succeeds.
pub async fn pre_auth_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let place = req.conn_data::<Arc<ConnectionPlace>>().cloned();
    let Some(place) = place.filter(|p| !p.released.load(Ordering::Acquire)) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let has_credentials = req.headers().contains_key(header::AUTHORIZATION)
        || crate::auth::query_token(req.query_string()).is_some();
    if place.over_limit && !has_credentials {
        let limit = place.limits.inner.per_address;
        let response = HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, "5"))
            .force_close()
            .json(ErrorBody {
                error: format!(
                    "too many connections from your address ({limit}) before signing in; close some and retry"
                ),
            });
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let succeeded = response.status().is_success()
        || response.status() == actix_web::http::StatusCode::SWITCHING_PROTOCOLS;
    if has_credentials && succeeded {
        place.release();
    } else if place.over_limit {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(response)
}
