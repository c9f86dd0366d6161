//! CDN pullers: requests from the CDN's own nodes, which verify viewers' tokens at the CDN edge
//! ("CDN-verifies"). Such a request is known by its address (the CDN's published ranges) and/or a
//! shared secret header; it skips the token check, gets playlists as the origin wrote them
//! (no viewer's token in them) and cacheable answers the CDN keeps for everyone.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use ipnet::IpNet;
use livegate_core::Secret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use livegate_core::config::Problems;

/// `[cdn]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnConfig {
    /// Addresses of the CDN's pullers, as CIDRs. When set, a puller must come from one.
    pub pullers: Vec<IpNet>,
    /// The header the CDN adds to its requests. Default `x-livegate-cdn-secret`.
    pub secret_header: String,
    /// Its value. When set, a puller must send it (compared in constant time).
    pub secret: Option<Secret>,
    /// `max-age` of playlists served to pullers, in seconds. Default 1.
    pub playlist_max_age_s: u64,
    /// `max-age` of segments served to pullers, in seconds. Default 86400.
    pub segment_max_age_s: u64,
}

impl Default for CdnConfig {
    fn default() -> Self {
        Self {
            pullers: Vec::new(),
            secret_header: "x-livegate-cdn-secret".to_owned(),
            secret: None,
            playlist_max_age_s: 1,
            segment_max_age_s: 86_400,
        }
    }
}

impl CdnConfig {
    /// Records problems under `cdn`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.check(
            !self.pullers.is_empty() || self.secret.is_some(),
            "cdn",
            "set cdn.pullers, cdn.secret or both: otherwise anyone would pass as the CDN",
        );
        problems.check(
            http::HeaderName::from_bytes(self.secret_header.as_bytes()).is_ok(),
            "cdn.secret_header",
            "must be a valid header name",
        );
        if let Some(secret) = &self.secret {
            problems.check(
                secret.expose().len() >= 16,
                "cdn.secret",
                "must be at least 16 characters",
            );
        }
    }
}

/// Recognises CDN pullers.
#[derive(Debug, Clone)]
pub struct Pullers {
    networks: Vec<IpNet>,
    header: http::HeaderName,
    secret: Option<Secret>,
    /// `Cache-Control` for playlists served to pullers.
    pub playlist_cache_control: String,
    /// `Cache-Control` for segments served to pullers.
    pub segment_cache_control: String,
    /// How long a playlist may be kept here for pullers: never longer than the CDN keeps it.
    pub playlist_max_age: Duration,
}

impl Pullers {
    /// The pullers `config` describes (validated).
    pub fn new(config: &CdnConfig) -> Option<Pullers> {
        let header = http::HeaderName::from_bytes(config.secret_header.as_bytes()).ok()?;
        Some(Pullers {
            networks: config.pullers.clone(),
            header,
            secret: config.secret.clone(),
            playlist_cache_control: format!("public, max-age={}", config.playlist_max_age_s),
            segment_cache_control: format!("public, max-age={}", config.segment_max_age_s),
            playlist_max_age: Duration::from_secs(config.playlist_max_age_s),
        })
    }

    /// Whether a request from `client` with `headers` comes from the CDN: from a listed
    /// network (when networks are listed) and with the secret (when one is set).
    pub fn is_puller(&self, client: Option<IpAddr>, headers: &HeaderMap) -> bool {
        let from_network = self.networks.is_empty()
            || client.is_some_and(|ip| self.networks.iter().any(|net| net.contains(&ip)));
        let with_secret = match &self.secret {
            None => true,
            Some(secret) => headers
                .get(&self.header)
                .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(secret.expose().as_bytes()))),
        };
        from_network && with_secret
    }

    /// The header that carries the secret (never passed on to the origin).
    pub fn header(&self) -> &http::HeaderName {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pullers(text: &str) -> Pullers {
        let config: CdnConfig = toml::from_str(text).unwrap();
        Pullers::new(&config).unwrap()
    }

    #[test]
    fn pullers_need_every_configured_proof() {
        let both = pullers("pullers = [\"203.0.113.0/24\"]\nsecret = \"a-long-shared-secret\"");
        let inside: IpAddr = "203.0.113.7".parse().unwrap();
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!both.is_puller(Some(inside), &headers));
        headers.insert(
            "x-livegate-cdn-secret",
            "a-long-shared-secret".parse().unwrap(),
        );
        assert!(both.is_puller(Some(inside), &headers));
        assert!(!both.is_puller(Some(outside), &headers));
        assert!(!both.is_puller(None, &headers));
        headers.insert(
            "x-livegate-cdn-secret",
            "a-long-shared-secreT".parse().unwrap(),
        );
        assert!(!both.is_puller(Some(inside), &headers));

        let by_address = pullers("pullers = [\"2001:db8::/32\"]");
        assert!(by_address.is_puller(Some("2001:db8::1".parse().unwrap()), &HeaderMap::new()));
        assert!(!by_address.is_puller(Some(inside), &HeaderMap::new()));
    }

    #[test]
    fn a_cdn_section_without_proof_is_refused() {
        let mut problems = Problems::default();
        CdnConfig::default().validate(&mut problems);
        assert!(!problems.as_slice().is_empty());
    }
}
