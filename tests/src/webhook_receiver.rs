//! A webhook endpoint for tests: records every POST it gets (headers and body) and answers
//! as told: 2xx, a status for the next N requests, or a status for all of them, optionally
//! after a delay.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

/// One POST as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub delivery: i64,
    pub signature: String,
    pub body: Vec<u8>,
    pub json: Value,
}

impl Received {
    /// Whether the signature header is `t=…,v1=HMAC-SHA256(secret, "t.body")`, computed here
    /// from the documented rule rather than by the dispatcher's own function.
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some((t, v1)) = self
            .signature
            .split_once(',')
            .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        hex::encode(mac.finalize().into_bytes()) == v1
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Answer the next this-many requests with `failure`…
    pub fail_next: u32,
    /// …or every request, while set.
    pub fail_always: bool,
    pub failure: StatusCode,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Behaviour {
    /// Every request answered with `failure` until told otherwise.
    pub fn always(failure: StatusCode) -> Behaviour {
        Behaviour {
            fail_always: true,
            failure,
            ..Behaviour::default()
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_next: 0,
            fail_always: false,
            failure: StatusCode::SERVICE_UNAVAILABLE,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Requests that got an answer other than 2xx.
    refused: u32,
    behaviour: Behaviour,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn spawn() -> WebhookReceiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            addr,
            inner,
            server,
        }
    }

    /// The URL to register.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.inner.lock().unwrap().behaviour = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests answered with something other than 2xx.
    pub fn refused(&self) -> u32 {
        self.inner.lock().unwrap().refused
    }

    /// Polls until `done` holds for what was received, or panics at the deadline.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "webhook receiver: not within {deadline:?}: {what}; got {} requests",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let received = Received {
        event: header("x-smsgate-event"),
        delivery: header("x-smsgate-delivery").parse().unwrap_or(0),
        signature: header("x-smsgate-signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
    };
    let (delay, answer) = {
        let mut inner = inner.lock().unwrap();
        let b = inner.behaviour;
        let answer = if b.fail_always || b.fail_next > 0 {
            inner.behaviour.fail_next = b.fail_next.saturating_sub(1);
            inner.refused += 1;
            b.failure
        } else {
            inner.received.push(received);
            StatusCode::NO_CONTENT
        };
        (b.delay, answer)
    };
    tokio::time::sleep(delay).await;
    answer
}
