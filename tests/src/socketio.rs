//! A minimal Socket.IO client over Engine.IO v4 long-polling, enough to test the API's
//! status sockets the way a python-socketio or socket.io-client peer talks to them: the
//! handshake, the namespace connect (with or without `auth`), events, and pongs.
//!
//! Long-polling rather than WebSocket keeps the tests on plain reqwest; the packets are
//! the same on both transports.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Engine.IO packets in one polling payload are separated by the record separator.
const SEPARATOR: char = '\u{1e}';

pub struct PollingSocket {
    http: reqwest::Client,
    endpoint: String,
}

/// How the client presents itself on the handshake and in the connect packet.
#[derive(Default)]
pub struct Handshake {
    /// Extra query string for the handshake URL, e.g. `api_key=…`.
    pub query: String,
    pub headers: HeaderMap,
    /// The connect packet's `auth` payload.
    pub auth: Option<Value>,
}

impl PollingSocket {
    /// Opens a session and connects to the `/` namespace. `Err` carries the server's
    /// connect-error message.
    pub async fn connect(base_url: &str, handshake: Handshake) -> Result<PollingSocket, String> {
        let http = reqwest::Client::builder()
            .default_headers(handshake.headers)
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap();
        let mut url = format!("{base_url}/socket.io/?EIO=4&transport=polling");
        if !handshake.query.is_empty() {
            url = format!("{url}&{}", handshake.query);
        }
        let open = http.get(&url).send().await.unwrap().text().await.unwrap();
        let open = open
            .strip_prefix('0')
            .unwrap_or_else(|| panic!("expected an open packet, got {open:?}"));
        let open: Value = serde_json::from_str(open).unwrap();
        let sid = open["sid"].as_str().expect("sid").to_owned();
        let socket = PollingSocket {
            http,
            endpoint: format!("{url}&sid={sid}"),
        };
        let connect = match handshake.auth {
            Some(auth) => format!("40{auth}"),
            None => "40".to_owned(),
        };
        socket.send(&connect).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            for packet in socket.poll(left).await {
                if let Some(reply) = packet.strip_prefix("40") {
                    assert!(reply.contains("sid"), "connect reply: {reply}");
                    return Ok(socket);
                }
                if let Some(error) = packet.strip_prefix("44") {
                    let error: Value = serde_json::from_str(error).unwrap_or(Value::Null);
                    return Err(error["message"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        panic!("no answer to the namespace connect");
    }

    async fn send(&self, payload: &str) {
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(payload.to_owned())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "POST {payload}: {}",
            response.status()
        );
    }

    /// One long poll: the packets the server had or sent within `wait` (empty when it
    /// sent nothing in that time). Answers pings.
    async fn poll(&self, wait: Duration) -> Vec<String> {
        let response = self.http.get(&self.endpoint).timeout(wait).send().await;
        let body = match response {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) if e.is_timeout() => return Vec::new(),
            Err(e) => panic!("poll failed: {e}"),
        };
        let packets: Vec<String> = body.split(SEPARATOR).map(str::to_owned).collect();
        if packets.iter().any(|p| p == "2") {
            self.send("3").await;
        }
        packets
    }

    /// Polls until the server disconnects this socket from the namespace (a `41` packet, or
    /// the session gone); false if it is still connected after `within`.
    pub async fn disconnected_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let response = self.http.get(&self.endpoint).timeout(left).send().await;
            let body = match response {
                Ok(response) if !response.status().is_success() => return true,
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(e) if e.is_timeout() => return false,
                Err(_) => return true,
            };
            let packets: Vec<&str> = body.split(SEPARATOR).collect();
            if packets.iter().any(|p| p.starts_with("41") || *p == "1") {
                return true;
            }
            if packets.contains(&"2") {
                self.send("3").await;
            }
        }
        false
    }

    /// Collects `event`'s payloads until `done` says enough, or `within` runs out.
    pub async fn events_until(
        &self,
        event: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            for packet in self.poll(left).await {
                let Some(body) = packet.strip_prefix("42") else {
                    continue;
                };
                let parsed: Value = serde_json::from_str(body).unwrap();
                if parsed[0] == event {
                    seen.push(parsed[1].clone());
                }
            }
        }
        seen
    }
}
