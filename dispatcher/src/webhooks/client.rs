//! The HTTP side of a webhook delivery: the envelope, its signature, and a client that
//! refuses internal addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use sha2::Sha256;
use smsgate_shared::net::is_internal;

use super::repo::Due;

/// Signs what a receiver gets: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`,
/// keyed with the webhook's secret. The timestamp is signed too, so a receiver that
/// rejects old ones (docs/webhooks.md suggests 5 minutes) can't be replayed to later.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The body every delivery POSTs.
#[derive(Serialize)]
struct Envelope<'a> {
    /// The delivery's id: the same on every retry, so receivers can deduplicate.
    id: i64,
    #[serde(rename = "type")]
    event_type: &'a str,
    /// When the event happened (the change committed), not when this attempt was made.
    created_at: String,
    data: &'a serde_json::Value,
}

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A 2xx: delivered.
    Accepted { status: StatusCode },
    /// Any other status; `retry_after` when the endpoint asked for a pause.
    Refused {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

/// Why an attempt got no HTTP answer at all.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the webhook URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("{0} is or resolves to an internal address; webhooks may only call public ones")]
    InternalTarget(String),
    #[error("request failed: {0}")]
    Http(String),
}

/// One pooled client for every webhook: timeouts, no redirects (a redirect could lead to
/// an internal address the URL check never saw), and unless internal targets are allowed,
/// a resolver that drops internal addresses.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_internal: bool,
}

impl WebhookClient {
    pub fn new(timeout: Duration, allow_internal: bool) -> Result<WebhookClient, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the target itself, out of reach of
            // the address check below.
            .no_proxy()
            .user_agent(concat!("smsgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(4);
        if !allow_internal {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(WebhookClient {
            http: builder.build()?,
            allow_internal,
        })
    }

    /// POSTs `due`'s event to its endpoint, signed with `secret` (its webhook's, opened).
    pub async fn post(&self, due: &Due, secret: &str) -> Result<Answer, DeliveryError> {
        let url = Url::parse(&due.url).map_err(|e| DeliveryError::InvalidUrl(e.to_string()))?;
        self.check_literal_host(&url)?;
        let body = serde_json::to_vec(&Envelope {
            id: due.id,
            event_type: &due.event_type,
            created_at: due.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: &due.payload,
        })
        .expect("an envelope always serializes");
        let signature = sign(secret, Utc::now().timestamp(), &body);
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("x-smsgate-event", due.event_type.as_str())
            .header("x-smsgate-delivery", due.id.to_string())
            .header("x-smsgate-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| refusal_in(&e).unwrap_or_else(|| DeliveryError::Http(describe(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer::Accepted { status });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        Ok(Answer::Refused {
            status,
            retry_after,
        })
    }

    /// reqwest does not ask the resolver about an IP written in the URL, so those are
    /// checked here.
    fn check_literal_host(&self, url: &Url) -> Result<(), DeliveryError> {
        if self.allow_internal {
            return Ok(());
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(DeliveryError::InvalidUrl("no host".into())),
        };
        if is_internal(ip) {
            return Err(DeliveryError::InternalTarget(ip.to_string()));
        }
        Ok(())
    }
}

/// The resolver's refusal, if that is why the request failed (reqwest wraps it).
fn refusal_in(e: &reqwest::Error) -> Option<DeliveryError> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(DeliveryError::InternalTarget(host)) = cause.downcast_ref::<DeliveryError>() {
            return Some(DeliveryError::InternalTarget(host.clone()));
        }
        source = cause.source();
    }
    None
}

/// reqwest's errors print their whole chain badly; say which kind it was and where.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Resolves with the system resolver and keeps only public addresses, so a name that
/// points (or is re-pointed) at an internal address is refused when it is called.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| !is_internal(addr.ip()))
                .collect();
            if public.is_empty() && !resolved.is_empty() {
                // The address stays out of the message: users read it back from the
                // delivery, and it would tell them what internal names resolve to.
                tracing::debug!(host, address = %resolved[0].ip(), "webhook host resolves to an internal address");
                return Err(Box::new(DeliveryError::InternalTarget(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn literal_internal_hosts_are_refused_unless_allowed() {
        let strict = WebhookClient::new(Duration::from_secs(1), false).unwrap();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest",
            "http://10.0.0.5/",
        ] {
            assert!(
                matches!(
                    strict.check_literal_host(&Url::parse(url).unwrap()),
                    Err(DeliveryError::InternalTarget(_))
                ),
                "{url}"
            );
        }
        assert!(strict
            .check_literal_host(&Url::parse("https://hooks.example.com/x").unwrap())
            .is_ok());
        assert!(strict
            .check_literal_host(&Url::parse("http://8.8.8.8/x").unwrap())
            .is_ok());
        let lenient = WebhookClient::new(Duration::from_secs(1), true).unwrap();
        assert!(lenient
            .check_literal_host(&Url::parse("http://127.0.0.1:8080/hook").unwrap())
            .is_ok());
    }
}
