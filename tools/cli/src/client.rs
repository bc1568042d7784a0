//! The HTTP side: one client, the API's envelope unwrapped, its errors turned into
//! `CliError`s once.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::config::Target;
use crate::error::CliError;

/// The header the API reads to accept a send at most once (`core::idempotency::HEADER`).
const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Attempts of a send that carries an idempotency key (the key makes a repeat safe).
const SEND_ATTEMPTS: u32 = 3;

pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A JSON request.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Body<'a>,
    pub idempotency_key: Option<&'a str>,
    /// How long the whole request may take: a 100,000-recipient upload needs longer than
    /// a status read.
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str) -> Call<'a> {
        Call {
            method,
            path,
            query: &[],
            body: Body::None,
            idempotency_key: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a request carries.
pub enum Body<'a> {
    None,
    Json(&'a Value),
    Csv(String),
}

/// A JSON answer: its status and body (`Null` for an empty body, e.g. a 204).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The API's `data` object, or the whole body for the routes without the envelope
    /// (login, cancel).
    pub fn data(self) -> Value {
        match self.body {
            Value::Object(mut map) if map.contains_key("data") => map.remove("data").unwrap(),
            other => other,
        }
    }
}

impl Api {
    pub fn new(target: Target) -> Result<Api, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("smsctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::network(&target.url, &e))?;
        Ok(Api {
            http,
            base: target.url,
            token: target.token,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        let token = self.token.as_deref().ok_or_else(|| {
            CliError::Usage(format!(
                "not logged in to {}: run `smsctl login`, or pass --token (or SMSCTL_TOKEN)",
                self.base
            ))
        })?;
        Ok(self.http.request(method, self.url(path)).bearer_auth(token))
    }

    /// Sends one JSON request and reads the answer; a non-2xx status is an error.
    pub async fn call(&self, call: &Call<'_>) -> Result<Answer, CliError> {
        let mut request = self
            .request(call.method.clone(), call.path)?
            .query(call.query)
            .timeout(call.timeout);
        match &call.body {
            Body::None => {}
            Body::Json(body) => request = request.json(body),
            Body::Csv(text) => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "text/csv; charset=utf-8")
                    .body(text.clone());
            }
        }
        if let Some(key) = call.idempotency_key {
            request = request.header(IDEMPOTENCY_HEADER, key);
        }
        let response = self.send(request, call.path).await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::network(&self.url(call.path), &e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| CliError::Api {
                status: status.as_u16(),
                code: "NOT_JSON".into(),
                message: format!(
                    "the API answered with something that is not JSON: {}",
                    excerpt(&text)
                ),
            })?
        };
        Ok(Answer { status, body })
    }

    /// [`Api::call`] for a send with an idempotency key: a network error, a 5xx or the key
    /// still being processed is retried (a few times, backing off), which cannot send twice.
    pub async fn call_once(&self, call: &Call<'_>) -> Result<Answer, CliError> {
        debug_assert!(call.idempotency_key.is_some());
        let mut attempt = 1;
        loop {
            match self.call(call).await {
                Err(e) if e.is_transient() && attempt < SEND_ATTEMPTS => {
                    eprintln!("retrying ({e})");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A response to read as a stream (CSV exports): errors are checked, the body is not.
    pub async fn stream(&self, path: &str) -> Result<Response, CliError> {
        let request = self.request(Method::GET, path)?;
        self.send(request, path).await
    }

    /// `POST /api/auth/login`: the only call without a token.
    pub async fn login(&self, username: &str, password: &str) -> Result<Value, CliError> {
        let path = "/api/auth/login";
        let body = serde_json::json!({"username": username, "password": password});
        let request = self
            .http
            .post(self.url(path))
            .json(&body)
            .timeout(Duration::from_secs(30));
        let response = self.send(request, path).await?;
        response
            .json()
            .await
            .map_err(|e| CliError::network(&self.url(path), &e))
    }

    async fn send(&self, request: RequestBuilder, path: &str) -> Result<Response, CliError> {
        let response = request
            .send()
            .await
            .map_err(|e| CliError::network(&self.url(path), &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }
}

/// The API's `{"error":{"code","message"}}`; a body that is not one (a proxy's HTML page,
/// say) is shown in part, with the status as its code.
async fn api_error(response: Response) -> CliError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<(String, String)> =
        serde_json::from_str::<Value>(&text).ok().and_then(|body| {
            let error = body.get("error")?;
            Some((
                error.get("code")?.as_str()?.to_owned(),
                error.get("message")?.as_str()?.to_owned(),
            ))
        });
    let (code, message) = parsed.unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        let message = if text.trim().is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", excerpt(&text))
        };
        (reason.to_ascii_uppercase().replace(' ', "_"), message)
    });
    CliError::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// The start of a body, on one line, for an error message.
fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// A fresh idempotency key: 128 random bits, hex.
pub fn new_idempotency_key() -> String {
    format!("smsctl-{}", hex::encode(rand::random::<[u8; 16]>()))
}
