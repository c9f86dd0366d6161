//! What the origin is told about a request: which `Host` it is for, who the viewer is, and the
//! query without the viewer's token; and how the origin's redirects are brought back to the edge.

use http::header;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::config::Config;

/// The forwarding policy, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct Forwarding {
    origin_host: Option<String>,
    forward_viewer_host: bool,
    /// `host:port` names under which the origin may refer to itself in a redirect, lower case.
    origin_authorities: Vec<String>,
}

impl Forwarding {
    /// The policy `config` describes.
    pub fn from_config(config: &Config) -> Forwarding {
        Forwarding {
            origin_host: config.origin.host.clone(),
            forward_viewer_host: config.origin.forward_viewer_host,
            origin_authorities: config
                .origin
                .addresses
                .iter()
                .chain(config.origin.host.iter())
                .map(|a| a.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Sets `Host` (`origin.host`; the viewer's with `origin.forward_viewer_host`; otherwise
    /// the origin's address `origin_authority`) and the viewer's address headers.
    pub fn apply(
        &self,
        session: &Session,
        request: &mut RequestHeader,
        origin_authority: &str,
    ) -> pingora::Result<()> {
        self.apply_to_pull(session, request, origin_authority)?;
        if let Some(ip) = client_ip(session) {
            let forwarded_for = match session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(previous) => format!("{previous}, {ip}"),
                None => ip.clone(),
            };
            request.insert_header("X-Forwarded-For", forwarded_for)?;
            request.insert_header("X-Real-IP", ip)?;
        } else {
            // Never pass on a client's own claim about its address.
            request.remove_header("X-Real-IP");
        }
        Ok(())
    }

    /// Sets only `Host`, as [`Forwarding::apply`] does: for a stream pull the proxy makes on
    /// behalf of every viewer of a stream, which no single viewer's address describes.
    pub fn apply_to_pull(
        &self,
        session: &Session,
        request: &mut RequestHeader,
        origin_authority: &str,
    ) -> pingora::Result<()> {
        let viewer_host = session.req_header().headers.get(header::HOST).cloned();
        match (&self.origin_host, viewer_host) {
            (Some(host), _) => request.insert_header(header::HOST, host.as_str())?,
            (None, Some(host)) if self.forward_viewer_host => {
                request.insert_header(header::HOST, host)?
            }
            (None, _) => request.insert_header(header::HOST, origin_authority)?,
        }
        Ok(())
    }

    /// Whether the origin is told the viewer's `Host` (so answers may differ by it).
    pub fn forwards_viewer_host(&self) -> bool {
        self.origin_host.is_none() && self.forward_viewer_host
    }

    /// An absolute redirect target on the origin becomes a path on this edge; anything else is
    /// returned unchanged (and treated like any playlist URI afterwards).
    pub fn localize<'l>(&self, location: &'l str) -> &'l str {
        let Some(rest) = location
            .strip_prefix("http://")
            .or_else(|| location.strip_prefix("https://"))
        else {
            return location;
        };
        let path_start = rest.find(['/', '?', '\\']).unwrap_or(rest.len());
        let authority = rest[..path_start].to_ascii_lowercase();
        match &rest[path_start..] {
            path if self.origin_authorities.contains(&authority)
                && path.starts_with('/')
                && !path.starts_with("//") =>
            {
                path
            }
            _ => location,
        }
    }
}

/// The viewer's address, as the proxy's socket saw it.
pub fn client_ip(session: &Session) -> Option<String> {
    session
        .client_addr()
        .and_then(|addr| addr.as_inet())
        .map(|addr| addr.ip().to_string())
}

/// `query` without any `name` parameter (however its name is percent-encoded, as
/// [`livegate_core::token::token_from_query`] reads it); `None` when nothing is left.
pub fn strip_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !pair.is_empty()
                && percent_encoding::percent_decode_str(key).decode_utf8_lossy() != name
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The value of `query`'s first `name` parameter as it was written (percent-encoded), its name
/// matched decoded: the one [`livegate_core::token::token_from_query`] reads.
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_encoding::percent_decode_str(key).decode_utf8_lossy() == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stripped_and_other_parameters_kept() {
        assert_eq!(
            strip_query_param("hls_ctx=ab&token=x&b=2", "token").as_deref(),
            Some("hls_ctx=ab&b=2")
        );
        assert_eq!(strip_query_param("token=x", "token"), None);
        assert_eq!(strip_query_param("token=x&token=y", "token"), None);
        assert_eq!(
            strip_query_param("%74oken=x&a=1", "token").as_deref(),
            Some("a=1")
        );
        assert_eq!(
            strip_query_param("tokenx=1", "token").as_deref(),
            Some("tokenx=1")
        );
    }

    #[test]
    fn the_first_value_of_a_parameter_is_read_as_written() {
        assert_eq!(
            query_value("a=1&%74oken=x%2By&token=z", "token"),
            Some("x%2By")
        );
        assert_eq!(query_value("token", "token"), Some(""));
        assert_eq!(query_value("tokenx=1", "token"), None);
    }

    #[test]
    fn only_the_origins_own_redirects_become_edge_paths() {
        let config = Config::from_toml(
            "[origin]\naddresses = [\"127.0.0.1:8081\"]\nhost = \"srs.internal\"\n[token]\nkeys = [\"k\"]\n",
        )
        .unwrap();
        let forwarding = Forwarding::from_config(&config);
        assert_eq!(
            forwarding.localize("http://127.0.0.1:8081/live/42.m3u8?hls_ctx=a"),
            "/live/42.m3u8?hls_ctx=a"
        );
        assert_eq!(forwarding.localize("http://SRS.internal/x.m3u8"), "/x.m3u8");
        for other in [
            "http://evil.example/live/42.m3u8",
            "http://127.0.0.1:8081//evil.example/x",
            "http://127.0.0.1:8081\\evil.example/x",
            "/live/42.m3u8",
        ] {
            assert_eq!(forwarding.localize(other), other);
        }
    }
}
