//! `Livegate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as Stripe
//! signs its webhooks: the timestamp is signed with the body, so a captured callback cannot
//! be replayed after the tolerance; several `v1=` entries and several configured secrets
//! are accepted, so that the provider and we can rotate secrets without a gap.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use livegate_core::Secret;

/// The header.
pub const HEADER: &str = "livegate-signature";

/// Why a signature was refused; [`SignatureError::reason`] is what refusals record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("the Livegate-Signature header is missing")]
    Missing,
    /// Not `t=…,v1=…`.
    #[error("the Livegate-Signature header is malformed")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    /// No `v1` matches any secret.
    #[error("the signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// The refusal reason.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed => "malformed_signature",
            SignatureError::Stale => "stale_signature",
            SignatureError::Mismatch => "bad_signature",
        }
    }
}

/// The signature of `body` at `timestamp` with `secret`, hex: what a provider sends.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

/// Checks `header` for `body` against `secrets` at `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    tolerance_s: u64,
    now: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" => candidates.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
            // Other schemes (a future v2) are skipped, as Stripe's clients do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() || candidates.len() > 8 {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_s {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        let mut signed = mac(secret.expose().as_bytes());
        signed.update(timestamp.to_string().as_bytes());
        signed.update(b".");
        signed.update(body);
        for candidate in &candidates {
            // Constant time: a timing side channel must not reveal how much of a guess is right.
            if signed.clone().verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<Secret> {
        vec![
            Secret::new("new-secret-0123456789"),
            Secret::new("old-secret-0123456789"),
        ]
    }

    #[test]
    fn a_signature_by_any_configured_secret_within_the_tolerance_passes() {
        let body = br#"{"id":"evt_1"}"#;
        for secret in ["new-secret-0123456789", "old-secret-0123456789"] {
            let header = format!("t=1000,v1={}", sign(secret.as_bytes(), 1000, body));
            assert_eq!(verify(Some(&header), body, &secrets(), 300, 1200), Ok(()));
        }
        // Two v1 entries, the first from a retired secret.
        let header = format!(
            "t=1000,v1={},v1={}",
            sign(b"retired-secret-012345", 1000, body),
            sign(b"new-secret-0123456789", 1000, body)
        );
        assert_eq!(verify(Some(&header), body, &secrets(), 300, 1000), Ok(()));
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(b"new-secret-0123456789", 1000, body);
        // (header, now, expected)
        let cases = [
            (None, 1000, SignatureError::Missing),
            (Some("garbage".to_owned()), 1000, SignatureError::Malformed),
            (Some(format!("v1={good}")), 1000, SignatureError::Malformed),
            (
                Some("t=1000,v1=zz".to_owned()),
                1000,
                SignatureError::Malformed,
            ),
            // Signed 400 s before now, and 700 s after: both past the 300 s tolerance.
            (
                Some(format!("t=1000,v1={good}")),
                1400,
                SignatureError::Stale,
            ),
            (
                Some(format!("t=1700,v1={good}")),
                1000,
                SignatureError::Stale,
            ),
            (
                Some(format!("t=1001,v1={good}")),
                1000,
                SignatureError::Mismatch,
            ),
            (
                Some(format!(
                    "t=1000,v1={}",
                    sign(b"other-secret-0123456", 1000, body)
                )),
                1000,
                SignatureError::Mismatch,
            ),
        ];
        for (header, now, expected) in cases {
            assert_eq!(
                verify(header.as_deref(), body, &secrets(), 300, now),
                Err(expected),
                "{header:?}"
            );
        }
        let tampered = format!("t=1000,v1={good}");
        assert_eq!(
            verify(Some(&tampered), br#"{"id":"evt_2"}"#, &secrets(), 300, 1000),
            Err(SignatureError::Mismatch)
        );
    }
}
