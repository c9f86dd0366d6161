//! Access tokens: HS256 JWTs signed with the first configured key and accepted under any.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Role;
use livegate_core::Secret;

/// The issuer every token names and every check requires.
const ISSUER: &str = "livegate-api";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (RFC 7519).
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds.
    pub exp: u64,
}

/// Why a token was refused; the message is shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Past its expiry.
    #[error("the access token has expired")]
    Expired,
    /// Signed by no configured key.
    #[error("the access token's signature is not valid")]
    BadSignature,
    /// Not a JWT of ours.
    #[error("the access token is malformed")]
    Malformed,
}

/// The signing and verifying keys.
#[derive(Clone)]
pub struct Jwt {
    signing: EncodingKey,
    verifying: Vec<DecodingKey>,
    ttl_s: u64,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.verifying.len())
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// From `auth.jwt_keys` (validated non-empty) and `auth.access_ttl_s`; `None` without keys.
    pub fn new(keys: &[Secret], ttl_s: u64) -> Option<Self> {
        let first = keys.first()?;
        Some(Self {
            signing: EncodingKey::from_secret(first.expose().as_bytes()),
            verifying: keys
                .iter()
                .map(|key| DecodingKey::from_secret(key.expose().as_bytes()))
                .collect(),
            ttl_s,
        })
    }

    /// The lifetime of new tokens, in seconds.
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    /// A token for `user_id` with `role`, issued at unix second `now`.
    pub fn issue(&self, user_id: i64, role: Role, now: u64) -> Result<String, JwtError> {
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + self.ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .map_err(|_| JwtError::Malformed)
    }

    /// The claims of `token` if some configured key signed it and it has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        for key in &self.verifying {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => match err.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => return Err(JwtError::Expired),
                    _ => return Err(JwtError::Malformed),
                },
            }
        }
        Err(JwtError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Secret {
        Secret::new(text.repeat(32))
    }

    #[test]
    fn signs_with_the_first_key_and_accepts_any() {
        let old = Jwt::new(&[key("o")], 900).unwrap();
        let rotated = Jwt::new(&[key("n"), key("o")], 900).unwrap();
        let now = crate::unix_now();
        let by_old = old.issue(7, Role::Streamer, now).unwrap();
        let claims = rotated.verify(&by_old).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("7", Role::Streamer));
        let by_new = rotated.issue(7, Role::Viewer, now).unwrap();
        assert_eq!(old.verify(&by_new), Err(JwtError::BadSignature));
        assert_eq!(rotated.verify("a.b.c"), Err(JwtError::Malformed));
        let expired = rotated.issue(7, Role::Viewer, now - 1000).unwrap();
        assert_eq!(rotated.verify(&expired), Err(JwtError::Expired));
    }
}
