//! Each SIM's broker user: created when the SIM is registered, stripped of its permissions
//! (and its connections closed) while the SIM is inactive, deleted with the SIM. Through
//! RabbitMQ's management HTTP API (`BROKER_ADMIN_URL`), the only way to manage users and
//! topic permissions without a shell on the broker's host.
//!
//! Written on the workspace's reqwest rather than with `rabbitmq_http_client`: the five
//! calls below are all we need, and that crate brings a second reqwest major version, a
//! second `rand` and its own base64 and serde helpers into every server binary.
//!
//! What a SIM user may do is [`SimGrants`]; docs/edge-gateway.md has the trust model.

use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use reqwest::{Method, StatusCode};
use serde_json::json;
use smsgate_shared::queue::edge::{sim_broker_user, SimGrants};
use smsgate_shared::queue::Names;
use tracing::info;
use url::Url;

/// Generated passwords are this many letters and digits (about 190 bits).
const PASSWORD_LEN: usize = 32;
/// The management API answers in milliseconds; a slow one should not hold a request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the broker's management API refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum BrokerAdminError {
    #[error("BROKER_ADMIN_URL is not set: SIM agents' broker users cannot be managed")]
    NotConfigured,
    #[error("the broker's management API is unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("the broker's management API answered {status} to {what}: {body}")]
    Refused {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
}

/// Where the management API is and who we are there.
#[derive(Debug, Clone)]
pub struct BrokerAdminSettings {
    /// Base URL without credentials, e.g. `http://127.0.0.1:15672/`.
    pub url: Url,
    pub username: String,
    pub password: String,
    /// The vhost the servers' AMQP_URL uses (`/` by default).
    pub vhost: String,
}

impl BrokerAdminSettings {
    /// From `BROKER_ADMIN_URL` (`http://user:password@host:15672`) and the AMQP URL's vhost.
    pub fn parse(admin_url: &str, amqp_url: &str) -> Result<BrokerAdminSettings, String> {
        let mut url = Url::parse(admin_url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".into());
        }
        let username = percent_decode(url.username());
        let password = percent_decode(url.password().unwrap_or(""));
        if username.is_empty() {
            return Err(
                "must name the management user, e.g. http://admin:secret@host:15672".into(),
            );
        }
        url.set_username("").ok();
        url.set_password(None).ok();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(BrokerAdminSettings {
            url,
            username,
            password,
            vhost: vhost_of(amqp_url)?,
        })
    }
}

/// The vhost an AMQP URL names: its path without the leading `/`, percent-decoded; `/`
/// when it has none (RabbitMQ's default).
fn vhost_of(amqp_url: &str) -> Result<String, String> {
    let url = Url::parse(amqp_url).map_err(|e| format!("AMQP_URL is not a URL: {e}"))?;
    let path = url.path().strip_prefix('/').unwrap_or("");
    Ok(if path.is_empty() {
        "/".to_owned()
    } else {
        percent_decode(path)
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A SIM agent's broker login, shown once when created or rotated.
#[derive(Debug, Clone)]
pub struct SimBrokerCredentials {
    pub username: String,
    pub password: String,
}

/// The SIMs' broker users. Cheap to clone. Without settings every call answers
/// [`BrokerAdminError::NotConfigured`], and callers decide whether that matters.
#[derive(Clone)]
pub struct SimBrokerUsers {
    inner: Option<Inner>,
    names: Names,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    settings: BrokerAdminSettings,
}

impl SimBrokerUsers {
    pub fn new(settings: Option<BrokerAdminSettings>, names: Names) -> SimBrokerUsers {
        let inner = settings.map(|settings| Inner {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .expect("a client with a timeout builds"),
            settings,
        });
        SimBrokerUsers { inner, names }
    }

    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// The broker user of SIM `sim_id`.
    pub fn username(&self, sim_id: i64) -> String {
        sim_broker_user(&self.names, sim_id)
    }

    /// Creates SIM `sim_id`'s user with a new password (replacing the password of one that
    /// exists, and closing its connections: a rotation is usually a stolen or replaced Pi)
    /// and grants it its permissions unless `active` is false.
    pub async fn provision(
        &self,
        sim_id: i64,
        active: bool,
    ) -> Result<SimBrokerCredentials, BrokerAdminError> {
        let inner = self.inner()?;
        let username = self.username(sim_id);
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), PASSWORD_LEN);
        inner
            .call(
                "create the SIM's user",
                Method::PUT,
                &["users", &username],
                Some(json!({ "password": password, "tags": "" })),
            )
            .await?;
        inner.close_connections_of(&username).await?;
        if active {
            self.grant(sim_id).await?;
        } else {
            self.revoke(sim_id).await?;
        }
        info!(sim.id = sim_id, user = %username, "SIM broker user provisioned");
        Ok(SimBrokerCredentials { username, password })
    }

    /// Gives SIM `sim_id`'s user its permissions (the SIM is active).
    pub async fn grant(&self, sim_id: i64) -> Result<(), BrokerAdminError> {
        let inner = self.inner()?;
        let username = self.username(sim_id);
        let grants = SimGrants::for_sim(&self.names, sim_id);
        let vhost = inner.settings.vhost.clone();
        inner
            .call(
                "grant the SIM's permissions",
                Method::PUT,
                &["permissions", &vhost, &username],
                Some(json!({
                    "configure": grants.configure,
                    "write": grants.write,
                    "read": grants.read,
                })),
            )
            .await?;
        inner
            .call(
                "grant the SIM's topic permissions",
                Method::PUT,
                &["topic-permissions", &vhost, &username],
                Some(json!({
                    "exchange": grants.topic_exchange,
                    "write": grants.topic_write,
                    "read": grants.topic_read,
                })),
            )
            .await?;
        Ok(())
    }

    /// Takes SIM `sim_id`'s permissions away and closes its connections (the SIM was
    /// deactivated): it can no longer take jobs or publish. The user and its password stay,
    /// so reactivating the SIM needs no visit to the Pi.
    pub async fn revoke(&self, sim_id: i64) -> Result<(), BrokerAdminError> {
        let inner = self.inner()?;
        let username = self.username(sim_id);
        let vhost = inner.settings.vhost.clone();
        inner
            .call_allowing_missing(
                "revoke the SIM's permissions",
                Method::DELETE,
                &["permissions", &vhost, &username],
            )
            .await?;
        inner
            .call_allowing_missing(
                "revoke the SIM's topic permissions",
                Method::DELETE,
                &["topic-permissions", &vhost, &username],
            )
            .await?;
        inner.close_connections_of(&username).await
    }

    /// Deletes SIM `sim_id`'s user and closes its connections (the SIM was deleted).
    pub async fn remove(&self, sim_id: i64) -> Result<(), BrokerAdminError> {
        let inner = self.inner()?;
        let username = self.username(sim_id);
        inner
            .call_allowing_missing(
                "delete the SIM's user",
                Method::DELETE,
                &["users", &username],
            )
            .await?;
        inner.close_connections_of(&username).await
    }

    fn inner(&self) -> Result<&Inner, BrokerAdminError> {
        self.inner.as_ref().ok_or(BrokerAdminError::NotConfigured)
    }
}

impl Inner {
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self
            .settings
            .url
            .join("api/")
            .expect("a relative path joins");
        url.path_segments_mut()
            .expect("an http URL has segments")
            .pop_if_empty()
            .extend(segments);
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, BrokerAdminError> {
        let mut request = self
            .http
            .request(method, self.url(segments))
            .basic_auth(&self.settings.username, Some(&self.settings.password))
            // Shown in the management UI's connection list as the reason it was closed.
            .header("X-Reason", "smsgate: SIM credentials changed");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.map_err(BrokerAdminError::Unreachable)
    }

    async fn call(
        &self,
        what: &'static str,
        method: Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
    ) -> Result<(), BrokerAdminError> {
        let response = self.send(method, segments, body).await?;
        check(what, response).await
    }

    /// A DELETE of something already gone is what we wanted.
    async fn call_allowing_missing(
        &self,
        what: &'static str,
        method: Method,
        segments: &[&str],
    ) -> Result<(), BrokerAdminError> {
        let response = self.send(method, segments, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        check(what, response).await
    }

    /// Closes every connection `username` has open. Permission changes apply to new
    /// channels only, so a revoked agent would otherwise keep consuming. By user name, from
    /// the broker's own connection tracking: `GET /api/connections` lists a new connection
    /// only after the next statistics interval (5 s), so a list-then-close would miss an
    /// agent that connected just before.
    async fn close_connections_of(&self, username: &str) -> Result<(), BrokerAdminError> {
        self.call_allowing_missing(
            "close the SIM's connections",
            Method::DELETE,
            &["connections", "username", username],
        )
        .await
    }
}

async fn check(what: &'static str, response: reqwest::Response) -> Result<(), BrokerAdminError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(BrokerAdminError::Refused {
        what,
        status,
        body: body.chars().take(300).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_split_into_base_and_credentials() {
        let s = BrokerAdminSettings::parse(
            "http://admin:s%40cret@rabbit:15672",
            "amqp://guest:guest@rabbit:5672/%2f",
        )
        .unwrap();
        assert_eq!(s.url.as_str(), "http://rabbit:15672/");
        assert_eq!(
            (s.username.as_str(), s.password.as_str()),
            ("admin", "s@cret")
        );
        assert_eq!(s.vhost, "/");
        let s = BrokerAdminSettings::parse("https://a:b@h/rabbitmq", "amqp://h/sms").unwrap();
        assert_eq!(s.url.as_str(), "https://h/rabbitmq/");
        assert_eq!(s.vhost, "sms");
        assert_eq!(vhost_of("amqp://h:5672").unwrap(), "/");
    }

    #[test]
    fn admin_urls_without_a_user_or_http_are_refused() {
        assert!(BrokerAdminSettings::parse("http://rabbit:15672", "amqp://h/%2f").is_err());
        assert!(BrokerAdminSettings::parse("amqp://a:b@rabbit", "amqp://h/%2f").is_err());
    }

    #[test]
    fn api_paths_encode_the_vhost_and_user() {
        let users = SimBrokerUsers::new(
            Some(BrokerAdminSettings::parse("http://a:b@h:15672", "amqp://h/%2f").unwrap()),
            Names::new("p"),
        );
        let inner = users.inner().unwrap();
        assert_eq!(
            inner
                .url(&["permissions", "/", &users.username(3)])
                .as_str(),
            "http://h:15672/api/permissions/%2F/p.sim.3"
        );
    }
}
