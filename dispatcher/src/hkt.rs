//! The HKT HTTP SMS gateway client and the one function that classifies its answers.

use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use smsgate_shared::domain::{MessageBody, PhoneNumber};
use tracing::Instrument;

use crate::metrics::HktMetrics;
use crate::settings::HktSettings;

/// What the gateway said, reduced to what the dispatcher acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayVerdict {
    /// Accepted (2xx). `response` is the start of the body, kept for support.
    Sent { response: String },
    /// Refused for good (4xx other than 408 and 429): retrying can't help.
    Permanent { error: String },
    /// Worth another try later (5xx, 408, 429, timeouts, connection errors).
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Not asked at all: the job's validity ran out before its request could start.
    Expired,
}

/// Why a request did not get an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HktError {
    #[error("gateway request timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("could not connect to the gateway")]
    Connect(#[source] reqwest::Error),
    #[error("gateway request failed")]
    Other(#[source] reqwest::Error),
}

impl From<reqwest::Error> for HktError {
    fn from(e: reqwest::Error) -> HktError {
        if e.is_timeout() {
            HktError::Timeout(e)
        } else if e.is_connect() {
            HktError::Connect(e)
        } else {
            HktError::Other(e)
        }
    }
}

/// An HTTP answer, before classification.
#[derive(Debug, Clone)]
pub struct GatewayAnswer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Longest body excerpt kept in `recipients.gateway_response`.
const RESPONSE_EXCERPT: usize = 200;

/// Turns an answer (or the lack of one) into what to do with the recipient.
pub fn classify(result: Result<GatewayAnswer, HktError>) -> GatewayVerdict {
    match result {
        Ok(answer) if answer.status.is_success() => GatewayVerdict::Sent {
            response: excerpt(&answer.body),
        },
        Ok(answer)
            if answer.status == StatusCode::REQUEST_TIMEOUT
                || answer.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            GatewayVerdict::Transient {
                error: describe(&answer),
                retry_after: answer.retry_after,
            }
        }
        Ok(answer) if answer.status.is_client_error() => GatewayVerdict::Permanent {
            error: describe(&answer),
        },
        Ok(answer) => GatewayVerdict::Transient {
            error: describe(&answer),
            retry_after: answer.retry_after,
        },
        Err(e) => GatewayVerdict::Transient {
            error: e.to_string(),
            retry_after: None,
        },
    }
}

fn describe(answer: &GatewayAnswer) -> String {
    let body = excerpt(&answer.body);
    if body.is_empty() {
        format!("HTTP {}", answer.status.as_u16())
    } else {
        format!("HTTP {}: {body}", answer.status.as_u16())
    }
}

fn excerpt(body: &str) -> String {
    body.trim().chars().take(RESPONSE_EXCERPT).collect()
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is rare for gateways and
/// ignored: the retry schedule applies instead).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// One pooled HTTP client for the whole process, with the gateway's credentials.
#[derive(Clone)]
pub struct HktClient {
    http: reqwest::Client,
    settings: HktSettings,
    metrics: HktMetrics,
}

impl HktClient {
    pub fn new(
        settings: HktSettings,
        max_idle_connections: usize,
        metrics: HktMetrics,
    ) -> Result<HktClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(max_idle_connections)
            .build()?;
        Ok(HktClient {
            http,
            settings,
            metrics,
        })
    }

    /// Form-POSTs one SMS: `application`, `mrt` (digits, `852XXXXXXXX`), `sender`, `msg_utf8`.
    pub async fn submit(
        &self,
        to: &PhoneNumber,
        body: &MessageBody,
    ) -> Result<GatewayAnswer, HktError> {
        let form = [
            ("application", self.settings.application_id.as_str()),
            ("mrt", to.hkt_digits()),
            ("sender", self.settings.sender_number.as_str()),
            ("msg_utf8", body.as_str()),
        ];
        async {
            let started = Instant::now();
            let sent = self
                .http
                .post(self.settings.base_url.clone())
                .form(&form)
                .send()
                .await;
            self.metrics.answered(
                sent.as_ref().ok().map(|r| r.status().as_u16()),
                started.elapsed(),
            );
            let response = sent?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            tracing::Span::current().record("http.status", status.as_u16());
            Ok(GatewayAnswer {
                status,
                retry_after,
                body,
            })
        }
        .instrument(tracing::info_span!(
            "hkt.submit",
            http.status = tracing::field::Empty
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Result<GatewayAnswer, HktError> {
        Ok(GatewayAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
            body: "body".into(),
        })
    }

    #[test]
    fn two_hundreds_are_sent() {
        assert!(matches!(
            classify(answer(200, None)),
            GatewayVerdict::Sent { .. }
        ));
        assert!(matches!(
            classify(answer(202, None)),
            GatewayVerdict::Sent { .. }
        ));
    }

    #[test]
    fn client_errors_are_permanent_except_408_and_429() {
        for status in [400, 401, 403, 404, 422] {
            assert!(
                matches!(
                    classify(answer(status, None)),
                    GatewayVerdict::Permanent { .. }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            classify(answer(408, None)),
            GatewayVerdict::Transient { .. }
        ));
        assert_eq!(
            classify(answer(429, Some(7))),
            GatewayVerdict::Transient {
                error: "HTTP 429: body".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn server_errors_are_transient() {
        for status in [500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(answer(status, None)),
                    GatewayVerdict::Transient { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn the_permanent_error_keeps_the_status_and_body() {
        assert_eq!(
            classify(answer(401, None)),
            GatewayVerdict::Permanent {
                error: "HTTP 401: body".into()
            }
        );
    }
}
