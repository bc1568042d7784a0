//! A webhook's URL, parsed when it is registered.

use std::net::IpAddr;

use smsgate_shared::net::is_internal;
use url::{Host, Url};

/// An `http`/`https` URL with a host and no credentials, at most 2,048 characters, that does
/// not name an internal address (unless the operator allows those). Holding one is proof it
/// passed; the dispatcher checks the address again when it resolves the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("url is not a valid URL: {0}")]
    Invalid(String),
    #[error("url must start with http:// or https://")]
    Scheme,
    #[error("url is longer than {max} characters", max = WebhookUrl::MAX_LEN)]
    TooLong,
    #[error(
        "url must not carry a user name or password; webhooks are authenticated by their signature"
    )]
    Credentials,
    #[error("url points at an internal address ({0}); webhooks may only call public hosts")]
    Internal(String),
}

impl WebhookUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(raw: &str, allow_internal: bool) -> Result<WebhookUrl, WebhookUrlError> {
        let raw = raw.trim();
        if raw.len() > Self::MAX_LEN {
            return Err(WebhookUrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| WebhookUrlError::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookUrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        let internal = match url.host() {
            None => return Err(WebhookUrlError::Invalid("it has no host".into())),
            Some(Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
            // Names that resolve to loopback by definition (RFC 6761).
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if internal && !allow_internal {
            return Err(WebhookUrlError::Internal(
                url.host_str().unwrap_or_default().to_owned(),
            ));
        }
        Ok(WebhookUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_http_and_https_urls_are_accepted() {
        for raw in [
            "https://hooks.example.com/smsgate",
            "http://203.0.113.7:8080/in?src=sms",
            "https://[2001:db8::1]/hook",
        ] {
            assert!(WebhookUrl::parse(raw, false).is_ok(), "{raw}");
        }
    }

    #[test]
    fn each_bad_url_is_refused_with_its_reason() {
        let refused = |raw: &str| WebhookUrl::parse(raw, false).unwrap_err();
        assert!(matches!(refused("not a url"), WebhookUrlError::Invalid(_)));
        assert_eq!(refused("ftp://example.com/x"), WebhookUrlError::Scheme);
        assert_eq!(refused("javascript:alert(1)"), WebhookUrlError::Scheme);
        assert_eq!(
            refused("https://user:pw@example.com/"),
            WebhookUrlError::Credentials
        );
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(refused(&long), WebhookUrlError::TooLong);
        for internal in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://api.localhost./hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
        ] {
            assert!(
                matches!(refused(internal), WebhookUrlError::Internal(_)),
                "{internal}"
            );
        }
    }

    #[test]
    fn internal_urls_pass_where_the_operator_allows_them() {
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(WebhookUrl::parse("http://localhost/hook", true).is_ok());
    }
}
