//! `livegate doctor`: checks a deployment from its configuration files — is the origin
//! reachable and are its hooks pointed at us, are the database and the bus reachable, are the
//! services up, do the API, the proxy and the hooks service share the play-token key, is the
//! clock in step with the origin's (tokens expire by the wall clock). Prints one line per check;
//! secrets are compared, never shown.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use livegate_core::bus::Bus;
use livegate_core::db::Database;
use tokio::net::TcpStream;

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Clock difference with the origin past which tokens would expire early or late.
const MAX_SKEW_S: i64 = 2;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// `Ok(detail)` or `Err(problem)`.
    pub outcome: Result<String, String>,
}

fn check(what: impl Into<String>, outcome: Result<String, String>) -> Check {
    Check {
        what: what.into(),
        outcome,
    }
}

/// The configuration files to check (any may be absent).
#[derive(Debug, Default)]
pub struct Deployment {
    /// The proxy's.
    pub proxy: Option<livegate_proxy::Config>,
    /// The hooks service's.
    pub hooks: Option<livegate_hooks::Config>,
    /// The API's.
    pub api: Option<livegate_api::Config>,
    /// SRS's configuration file, as text.
    pub srs: Option<String>,
}

/// Reads the files given.
pub fn load(
    proxy: Option<&Path>,
    hooks: Option<&Path>,
    api: Option<&Path>,
    srs: Option<&Path>,
) -> Result<Deployment, String> {
    use livegate_core::config::{load_from, EnvSource};
    let named = |path: &Path, err: &dyn std::fmt::Display| format!("{}: {err}", path.display());
    Ok(Deployment {
        proxy: proxy
            .map(|p| {
                load_from(Some(p), &EnvSource::from_process("LIVEGATE_PROXY__"))
                    .map_err(|e| named(p, &e))
            })
            .transpose()?,
        hooks: hooks
            .map(|p| {
                load_from(Some(p), &EnvSource::from_process("LIVEGATE_HOOKS__"))
                    .map_err(|e| named(p, &e))
            })
            .transpose()?,
        api: api
            .map(|p| {
                load_from(Some(p), &EnvSource::from_process("LIVEGATE_API__"))
                    .map_err(|e| named(p, &e))
            })
            .transpose()?,
        srs: srs
            .map(|p| std::fs::read_to_string(p).map_err(|e| named(p, &e)))
            .transpose()?,
    })
}

async fn reachable(address: &str) -> Result<String, String> {
    let addr: SocketAddr = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{address}` does not resolve"))?;
    match tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(format!("{addr} accepts connections")),
        Ok(Err(err)) => Err(format!("{addr}: {err}")),
        Err(_) => Err(format!(
            "{addr}: no answer in {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

async fn ready(client: &reqwest::Client, admin: SocketAddr) -> Result<String, String> {
    let url = format!("http://{admin}/readyz");
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body.trim().to_owned())
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}

/// The clock difference with the origin, from its `Date` header.
async fn skew(client: &reqwest::Client, origin: &str) -> Result<String, String> {
    let answer = client
        .get(format!("http://{origin}/"))
        .send()
        .await
        .map_err(|err| format!("{origin}: {err}"))?;
    let date = answer
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| format!("{origin} sends no Date header"))?;
    let theirs = httpdate::parse_http_date(date).map_err(|err| format!("Date `{date}`: {err}"))?;
    let ours = std::time::SystemTime::now();
    let difference = match ours.duration_since(theirs) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    };
    if difference.abs() <= MAX_SKEW_S {
        Ok(format!(
            "within {MAX_SKEW_S} s of the origin's ({difference:+} s)"
        ))
    } else {
        Err(format!(
            "{difference:+} s from the origin's clock: tokens expire early or late; run NTP"
        ))
    }
}

/// Hook URLs in SRS's configuration that do not point at the hooks service's port.
fn srs_hooks(srs: &str, hooks_port: u16) -> Result<String, String> {
    let urls: Vec<&str> = srs
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("on_"))
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|url| url.trim_end_matches(';'))
        .collect();
    if urls.is_empty() {
        return Err("SRS's configuration has no http_hooks: publishes are not checked".to_owned());
    }
    let elsewhere: Vec<&str> = urls
        .iter()
        .copied()
        .filter(|url| {
            url::Url::parse(url)
                .ok()
                .and_then(|url| url.port_or_known_default())
                != Some(hooks_port)
        })
        .collect();
    if elsewhere.is_empty() {
        Ok(format!(
            "{} hook URLs point at port {hooks_port}",
            urls.len()
        ))
    } else {
        Err(format!(
            "hook URLs not on the hooks service's port {hooks_port}: {}",
            elsewhere.join(", ")
        ))
    }
}

/// Runs every check the files allow.
pub async fn run(deployment: &Deployment) -> Vec<Check> {
    let client = reqwest::Client::builder()
        .timeout(CHECK_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut checks = Vec::new();
    if let Some(proxy) = &deployment.proxy {
        for origin in &proxy.origin.addresses {
            checks.push(check(format!("origin {origin}"), reachable(origin).await));
        }
        if let Some(origin) = proxy.origin.addresses.first() {
            checks.push(check("clock", skew(&client, origin).await));
        }
        checks.push(check(
            "proxy running",
            ready(&client, proxy.admin.listen).await,
        ));
    }
    if let Some(hooks) = &deployment.hooks {
        checks.push(check("hooks database", database(&hooks.database).await));
        checks.push(check("hooks bus", bus(&hooks.bus).await));
        checks.push(check(
            "hooks running",
            ready(&client, hooks.server.admin_listen).await,
        ));
        if let Some(srs) = &deployment.srs {
            checks.push(check(
                "SRS hooks",
                srs_hooks(srs, hooks.server.listen.port()),
            ));
        }
    }
    if let Some(api) = &deployment.api {
        checks.push(check("api database", database(&api.database).await));
        checks.push(check("api bus", bus(&api.bus).await));
        checks.push(check(
            "api running",
            ready(&client, api.server.admin_listen).await,
        ));
    }
    if let Some(outcome) = keys_agree(deployment) {
        checks.push(check("play-token keys", outcome));
    }
    checks
}

async fn database(config: &livegate_core::db::DbConfig) -> Result<String, String> {
    // Opening a SQLite URL would create the file: a doctor only looks.
    if let Some(path) = config.url.expose().strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        if path != ":memory:" && !Path::new(path).exists() {
            return Err(format!(
                "no database file at {path} (the service makes it on first start)"
            ));
        }
    }
    let db = tokio::time::timeout(CHECK_TIMEOUT, Database::connect(config))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|err| err.to_string())?;
    db.ping().await.map_err(|err| err.to_string())?;
    Ok(format!("{:?} answers", db.backend()))
}

async fn bus(config: &livegate_core::bus::BusConfig) -> Result<String, String> {
    let bus = Bus::connect(config).map_err(|err| err.to_string())?;
    bus.ping().await.map_err(|err| err.to_string())?;
    Ok("answers".to_owned())
}

/// Whether the key the API signs with is accepted by the proxy and the hooks service.
fn keys_agree(deployment: &Deployment) -> Option<Result<String, String>> {
    let signing = deployment
        .api
        .as_ref()?
        .play_token
        .keys
        .first()?
        .expose()
        .to_owned();
    let mut problems = Vec::new();
    if let Some(proxy) = &deployment.proxy {
        if !proxy.token.keys.iter().any(|key| key.expose() == signing) {
            problems.push("the proxy does not accept the key the API signs with");
        }
    }
    if let Some(hooks) = &deployment.hooks {
        if !hooks
            .play
            .token_keys
            .iter()
            .any(|key| key.expose() == signing)
        {
            problems.push("the hooks service (on_play) does not accept the key the API signs with");
        }
    }
    Some(if problems.is_empty() {
        Ok("the API's signing key is accepted everywhere checked".to_owned())
    } else {
        Err(problems.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_hook_urls_must_reach_the_hooks_port() {
        let shipped = include_str!("../../infra/srs/livegate.conf");
        assert!(srs_hooks(shipped, 8085).is_ok());
        let problem = srs_hooks(shipped, 9000).unwrap_err();
        assert!(problem.contains("8085/api/v1/hook/on_publish"), "{problem}");
        assert!(srs_hooks("vhost __defaultVhost__ {}", 8085).is_err());
    }

    #[tokio::test]
    async fn the_shipped_examples_agree_on_keys_and_a_dead_deployment_is_reported() {
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
        let deployment = load(
            Some(&infra.join("proxy.example.toml")),
            Some(&infra.join("hooks.example.toml")),
            Some(&infra.join("api.example.toml")),
            Some(&infra.join("srs/livegate.conf")),
        )
        .unwrap();
        assert_eq!(
            keys_agree(&deployment),
            Some(Ok(
                "the API's signing key is accepted everywhere checked".to_owned()
            ))
        );
        let mut other = deployment;
        if let Some(proxy) = other.proxy.as_mut() {
            proxy.token.keys = vec![livegate_core::Secret::new("another-key")];
            proxy.origin.addresses = vec!["127.0.0.1:1".to_owned()];
            proxy.admin.listen = "127.0.0.1:1".parse().unwrap();
        }
        assert!(keys_agree(&other).unwrap().unwrap_err().contains("proxy"));
        other.hooks = None;
        other.api = None;
        let checks = run(&other).await;
        assert!(checks.iter().all(|c| c.outcome.is_err()), "{checks:?}");
    }
}
