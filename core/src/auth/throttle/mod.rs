//! The one login throttle, for the panel's `/login`, `POST /api/auth/login` and
//! `POST /api/auth`. Failures are counted per (username, client address) and per client
//! address in PostgreSQL, so every API replica shares the budget.
//!
//! An attempt is *charged* before its password is hashed: one statement increments both
//! counters and returns them, so parallel attempts cannot all pass a check made before any
//! failure is recorded. A refused attempt and one that never reached a verdict (busy,
//! database error) are refunded; a successful one clears its (username, address) counter and
//! refunds the address. There is no username-only budget: failures from one address must
//! never lock the account for everyone else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

mod repo;

use super::settings::LoginSettings;

const USER_ADDRESS: &str = "user_address";
const ADDRESS: &str = "address";

/// An attempt that passed the throttle and holds a charge on both budgets; settle it with
/// [`succeeded`], [`failed`] or [`undecided`].
#[derive(Debug)]
pub struct Charge {
    user_key: String,
    address: String,
}

/// The throttle's answer before the password is checked.
#[derive(Debug)]
pub enum Verdict {
    Allowed(Charge),
    /// Over a budget; nothing is hashed. The budget frees after `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

/// Charges one attempt to the budgets of (`username`, `address`) and of `address`, with
/// an IPv6 address counted by its /64 ([`throttle_key`]).
#[tracing::instrument(name = "auth.throttle.charge", skip_all)]
pub async fn charge(
    db: &PgPool,
    settings: &LoginSettings,
    username: &str,
    address: &str,
) -> Result<Verdict, sqlx::Error> {
    let address = throttle_key(address);
    let charge = Charge {
        user_key: user_key(username, &address),
        address,
    };
    let rows = repo::charge(db, &charge.user_key, &charge.address, settings.window).await?;
    let over = rows
        .iter()
        .filter(|budget| {
            let limit = match budget.scope.as_str() {
                USER_ADDRESS => settings.max_failures_per_user_address,
                _ => settings.max_failures_per_address,
            };
            i64::from(budget.failures) > i64::from(limit)
        })
        .map(|budget| budget.retry_after_secs)
        .fold(None, |max: Option<f64>, secs| {
            Some(max.map_or(secs, |m| m.max(secs)))
        });
    match over {
        None => Ok(Verdict::Allowed(charge)),
        Some(secs) => {
            // A refused attempt checked nothing: it must not extend anyone's count, nor leave
            // a row behind (a sprayer over the address budget would otherwise add one per
            // username tried). The sweep runs here too, as refusals may be all an attacker
            // gets.
            refund(db, &charge).await?;
            sweep(db, settings).await?;
            Ok(Verdict::Refused {
                retry_after: Duration::from_secs((secs.ceil() as u64).max(1)),
            })
        }
    }
}

/// The password was right: the (username, address) budget starts afresh and the address
/// gets its charge back (one good password must not reset a sprayer's count, though).
pub async fn succeeded(db: &PgPool, charge: Charge) -> Result<(), sqlx::Error> {
    repo::delete(db, USER_ADDRESS, &charge.user_key).await?;
    refund_scope(db, ADDRESS, &charge.address).await
}

/// The password was wrong: the charge stays as the failure. Also sweeps windows long over.
pub async fn failed(
    db: &PgPool,
    settings: &LoginSettings,
    _charge: Charge,
) -> Result<(), sqlx::Error> {
    sweep(db, settings).await
}

/// No verdict on the password (hashing busy, an error): both charges are returned.
pub async fn undecided(db: &PgPool, charge: Charge) -> Result<(), sqlx::Error> {
    refund(db, &charge).await
}

/// Deletes the counters of windows that are over.
async fn sweep(db: &PgPool, settings: &LoginSettings) -> Result<(), sqlx::Error> {
    repo::delete_windows_over(db, settings.window).await
}

async fn refund(db: &PgPool, charge: &Charge) -> Result<(), sqlx::Error> {
    refund_scope(db, USER_ADDRESS, &charge.user_key).await?;
    refund_scope(db, ADDRESS, &charge.address).await
}

/// Takes one charge back; a counter back at zero is deleted, so refunded attempts leave no
/// rows. The delete re-checks `failures = 0`: a charge made in between keeps its row.
async fn refund_scope(db: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    if repo::take_one_back(db, scope, key).await? == Some(0) {
        repo::delete_if_zero(db, scope, key).await?;
    }
    Ok(())
}

/// The (username, address) key: the address (never contains a space), a space, and a hash
/// of the lower-cased username, so case variants share a budget and a megabyte of username
/// is stored as 64 characters.
fn user_key(username: &str, address: &str) -> String {
    let digest = Sha256::digest(username.to_lowercase().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{address} {hex}")
}

/// A range of addresses from `TRUSTED_PROXIES`: `10.0.0.0/8`, `2001:db8::/32`, or a single
/// address (`127.0.0.1`, a /32 or /128). Parsed by hand: a prefix comparison is a few lines,
/// and the tests below pin its edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `address` or `address/prefix`; bits beyond the prefix are cleared.
    pub fn parse(raw: &str) -> Result<IpRange, String> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{raw}` is not an IP address or CIDR range"))?;
        let bits = bit_length(address);
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`{raw}`: the prefix length must be 0 to {bits}"))?,
        };
        Ok(IpRange {
            network: masked(address, prefix),
            prefix,
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        bit_length(address) == bit_length(self.network)
            && masked(address, self.prefix) == self.network
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bit_length(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `address` with every bit after the first `prefix` cleared.
fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The key an address's budgets are counted under: an IPv4 address as it is, an IPv6 one
/// by its /64 (`2001:db8:1:2::/64`). One host or customer line is given a whole /64, so
/// counting single IPv6 addresses would let it rotate through 2^64 fresh budgets. The audit
/// log keeps the full address; only the budgets are shared.
pub fn throttle_key(address: &str) -> String {
    match address.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(v6 @ IpAddr::V6(_)) => IpRange {
            network: masked(v6, 64),
            prefix: 64,
        }
        .to_string(),
        Ok(v4) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

/// The TCP peer of a request, as the server saw it (`None` where the server did not record
/// it); each edge reads it from its framework's connection info.
#[derive(Debug, Clone, Copy)]
pub struct TcpPeer(pub Option<SocketAddr>);

/// The client's address, for the throttle and the audit log: the TCP peer, or, when proxy
/// headers are trusted (`TRUST_PROXY_HEADERS`) *and* the peer is one of `TRUSTED_PROXIES`,
/// the address that proxy reports. nginx overwrites `X-Real-IP` with the peer it saw;
/// failing that, `X-Forwarded-For` is read from the right, past the entries our own proxies
/// appended, to the first address that is not one of them (entries further left come from
/// the client and may be forged). A header value that is not an IP address is ignored.
pub fn client_address(headers: &HeaderMap, peer: &TcpPeer, settings: &LoginSettings) -> String {
    let Some(peer) = peer.0.map(|addr| addr.ip().to_canonical()) else {
        return "unknown".to_owned();
    };
    let trusted = |address: IpAddr| settings.trusted_proxies.iter().any(|r| r.contains(address));
    if !settings.trust_proxy_headers || !trusted(peer) {
        return peer.to_string();
    }
    forwarded_client(headers, trusted)
        .unwrap_or(peer)
        .to_string()
}

/// The client a trusted proxy reports, if its headers name one by a valid address.
fn forwarded_client(headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    if let Some(real_ip) = values("x-real-ip")
        .into_iter()
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
    {
        return parse_ip(&real_ip);
    }
    // Several X-Forwarded-For headers read as one list, in order.
    let forwarded = values("x-forwarded-for").join(",");
    let mut leftmost = None;
    for entry in forwarded
        .rsplit(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let address = parse_ip(entry)?;
        if !trusted(address) {
            return Some(address);
        }
        leftmost = Some(address);
    }
    // Every hop was one of our proxies: the client is the first of them.
    leftmost
}

fn parse_ip(raw: &str) -> Option<IpAddr> {
    raw.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn from_peer(peer: [u8; 4]) -> TcpPeer {
        TcpPeer(Some(SocketAddr::from((peer, 4711))))
    }

    fn peer() -> TcpPeer {
        from_peer([10, 0, 0, 9])
    }

    /// Proxy headers on, with our proxies in 10.0.0.0/8.
    fn behind(proxies: &str) -> LoginSettings {
        LoginSettings {
            trust_proxy_headers: true,
            trusted_proxies: proxies
                .split(',')
                .map(|p| IpRange::parse(p).unwrap())
                .collect(),
            ..LoginSettings::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn proxy_headers_are_ignored_unless_trusted() {
        let headers = headers(&[("x-real-ip", "203.0.113.7")]);
        let off = LoginSettings {
            trust_proxy_headers: false,
            ..behind("10.0.0.0/8")
        };
        assert_eq!(client_address(&headers, &peer(), &off), "10.0.0.9");
        assert_eq!(
            client_address(&headers, &peer(), &behind("10.0.0.0/8")),
            "203.0.113.7"
        );
    }

    #[test]
    fn proxy_headers_from_a_peer_that_is_not_a_trusted_proxy_are_ignored() {
        let headers = headers(&[
            ("x-real-ip", "203.0.113.7"),
            ("x-forwarded-for", "203.0.113.8"),
        ]);
        // The default list is loopback only: a client reaching the API directly is its peer.
        let default = LoginSettings {
            trust_proxy_headers: true,
            ..LoginSettings::default()
        };
        assert_eq!(client_address(&headers, &peer(), &default), "10.0.0.9");
        assert_eq!(
            client_address(&headers, &from_peer([127, 0, 0, 1]), &default),
            "203.0.113.7"
        );
        assert_eq!(
            client_address(&headers, &peer(), &behind("10.0.1.0/24, 192.0.2.1")),
            "10.0.0.9"
        );
    }

    #[test]
    fn a_proxy_header_that_is_not_an_ip_address_falls_back_to_the_peer() {
        let settings = behind("10.0.0.0/8");
        for bad in [
            headers(&[("x-real-ip", "203.0.113.7 junk")]),
            headers(&[("x-real-ip", "not-an-address")]),
            headers(&[("x-forwarded-for", "203.0.113.7, evil")]),
            headers(&[("x-forwarded-for", "  ")]),
        ] {
            assert_eq!(
                client_address(&bad, &peer(), &settings),
                "10.0.0.9",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_right_most_forwarded_for_entry_is_taken_not_the_forgeable_left_most() {
        let headers = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.23")]);
        assert_eq!(
            client_address(&headers, &peer(), &behind("10.0.0.0/8")),
            "198.51.100.23"
        );
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_past_our_own_proxies() {
        let settings = behind("10.0.0.0/8");
        let chain = headers(&[(
            "x-forwarded-for",
            "1.2.3.4, 198.51.100.23, 10.1.2.3, 10.0.0.5",
        )]);
        assert_eq!(client_address(&chain, &peer(), &settings), "198.51.100.23");
        // Split over two headers, read in order.
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4, 198.51.100.23"),
            ("x-forwarded-for", "10.1.2.3"),
        ]);
        assert_eq!(client_address(&split, &peer(), &settings), "198.51.100.23");
        // Only our proxies: the client is the first of them.
        let internal = headers(&[("x-forwarded-for", "10.7.7.7, 10.1.2.3")]);
        assert_eq!(client_address(&internal, &peer(), &settings), "10.7.7.7");
    }

    #[test]
    fn ipv4_mapped_peers_and_headers_match_ipv4_ranges() {
        let extensions = TcpPeer(Some(SocketAddr::new(
            "::ffff:10.0.0.9".parse().unwrap(),
            4711,
        )));
        let headers = headers(&[("x-real-ip", "::ffff:203.0.113.7")]);
        assert_eq!(
            client_address(&headers, &extensions, &behind("10.0.0.0/8")),
            "203.0.113.7"
        );
    }

    #[test]
    fn ip_ranges_parse_addresses_and_prefixes_and_match_by_prefix() {
        let range = IpRange::parse("10.1.2.3/16").unwrap();
        assert_eq!(range.to_string(), "10.1.0.0/16");
        assert!(range.contains("10.1.255.1".parse().unwrap()));
        assert!(!range.contains("10.2.0.1".parse().unwrap()));
        assert!(!range.contains("::ffff:10.2.0.1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap()));
        assert!(!IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert_eq!(IpRange::parse("::1").unwrap().to_string(), "::1/128");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "host",
            "",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_clients_share_budgets_per_64_and_ipv4_clients_per_address() {
        assert_eq!(throttle_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            throttle_key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(throttle_key("2001:db8:1:3::1"), "2001:db8:1:2::/64");
        assert_eq!(throttle_key("203.0.113.7"), "203.0.113.7");
        assert_eq!(throttle_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(throttle_key("unknown"), "unknown");
    }

    #[test]
    fn usernames_share_a_budget_across_case_and_are_bounded_in_size() {
        assert_eq!(
            user_key("SMSadmin", "1.2.3.4"),
            user_key("smsadmin", "1.2.3.4")
        );
        assert_ne!(
            user_key("SMSadmin", "1.2.3.4"),
            user_key("SMSadmin", "1.2.3.5")
        );
        assert_eq!(
            user_key(&"x".repeat(1 << 20), "1.2.3.4").len(),
            "1.2.3.4 ".len() + 64
        );
    }
}
