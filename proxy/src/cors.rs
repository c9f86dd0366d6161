//! Cross-origin access for web players: the allow-list, preflights' answer headers, and the
//! origin's own CORS headers dropped so that they can never widen the policy.

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;

use crate::config::CorsConfig;

/// CORS policy for web players.
#[derive(Debug, Clone)]
pub struct Cors {
    any: bool,
    allowed: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers.
    pub max_age: String,
}

impl Cors {
    /// The policy `config` describes.
    pub fn from_config(config: &CorsConfig) -> Cors {
        Cors {
            any: config.allowed_origins.iter().any(|o| o == "*"),
            allowed: config.allowed_origins.clone(),
            max_age: config.max_age_s.to_string(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allow(&self, origin: Option<&[u8]>) -> Option<Bytes> {
        let origin = origin?;
        if self.any {
            return Some(Bytes::from_static(b"*"));
        }
        self.allowed
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
            .then(|| Bytes::copy_from_slice(origin))
    }
}

/// Applies the proxy's CORS policy: the origin's own CORS headers are dropped (SRS's
/// `crossdomain` must not widen the policy) and ours are added for an allowed origin.
pub fn apply(response: &mut ResponseHeader, allow_origin: Option<&[u8]>) -> pingora::Result<()> {
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        response.remove_header(&name);
    }
    if let Some(origin) = allow_origin {
        response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        response.append_header(header::VARY, "Origin")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_allows_listed_origins_only() {
        let cors = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["https://player.example".into()],
            max_age_s: 60,
        });
        assert_eq!(
            cors.allow(Some(b"https://player.example")).as_deref(),
            Some(&b"https://player.example"[..])
        );
        assert_eq!(cors.allow(Some(b"https://evil.example")), None);
        assert_eq!(cors.allow(None), None);
        let any = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["*".into()],
            max_age_s: 60,
        });
        assert_eq!(
            any.allow(Some(b"https://x.example")).as_deref(),
            Some(&b"*"[..])
        );
    }
}
