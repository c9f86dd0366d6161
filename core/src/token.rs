//! Play token v1: `base64url(room_id "|" exp "|" hex(hmac_sha256(key, room_id "|" exp)))`.
//!
//! The format is a public contract (other backends mint tokens that livegate verifies), so the
//! rules here follow the published specification to the letter: a length cap before any decoding,
//! either base64 alphabet with or without padding, canonical decimals only, a signature accepted
//! under any configured key and compared in constant time, and an inclusive expiry with leeway.

use std::fmt;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

use crate::secret::Secret;

/// Tokens longer than this are refused before any decoding work is done.
pub const MAX_TOKEN_LEN: usize = 512;

/// Length of the hex-encoded HMAC-SHA256 signature.
const SIG_HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    // Every encoder writes zero trailing bits; accepting others would let two spellings of one
    // token exist, so a changed character would not always mean a changed token.
    .with_decode_allow_trailing_bits(false);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// Why a token was refused. The label goes to logs and metrics, never to the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    /// The request carried no token at all.
    #[error("missing")]
    Missing,
    /// The token is not a well-formed v1 token (length, encoding, fields).
    #[error("malformed")]
    Malformed,
    /// No configured key produced the token's signature.
    #[error("bad_signature")]
    BadSignature,
    /// The token's expiry (plus leeway) lies in the past.
    #[error("expired")]
    Expired,
    /// The token is valid, but for another room than the one requested.
    #[error("wrong_room")]
    WrongRoom,
}

impl Rejection {
    /// Every reason, in the order used for metric pre-registration.
    pub const ALL: [Rejection; 5] = [
        Rejection::Missing,
        Rejection::Malformed,
        Rejection::BadSignature,
        Rejection::Expired,
        Rejection::WrongRoom,
    ];

    /// The stable label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::WrongRoom => "wrong_room",
        }
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The room the token is for.
    pub room_id: u64,
    /// Unix seconds: the last second at which the token is valid (before leeway).
    pub expires_at: u64,
}

/// Why a [`TokenKeys`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key was configured.
    #[error("at least one token key is required")]
    NoKeys,
    /// A configured key is the empty string.
    #[error("token key #{0} is empty")]
    EmptyKey(usize),
}

/// The ordered list of HMAC keys: mint with the first, accept any (key rotation).
#[derive(Clone)]
pub struct TokenKeys {
    // A keyed HMAC state per secret, prepared once so verification only clones it.
    macs: Vec<HmacSha256>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("count", &self.macs.len())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Prepares the keys; the first one signs newly minted tokens.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Result<Self, KeyError> {
        let mut macs = Vec::new();
        for (index, secret) in secrets.into_iter().enumerate() {
            let raw = secret.expose().as_bytes();
            if raw.is_empty() {
                return Err(KeyError::EmptyKey(index));
            }
            // HMAC accepts keys of any length, so this cannot fail.
            let mac = HmacSha256::new_from_slice(raw).map_err(|_| KeyError::EmptyKey(index))?;
            macs.push(mac);
        }
        if macs.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self { macs })
    }

    /// Mints a token for `room_id` that stays valid through unix second `expires_at`.
    pub fn mint(&self, room_id: u64, expires_at: u64) -> String {
        let message = format!("{room_id}|{expires_at}");
        let mut mac = self.macs[0].clone();
        mac.update(message.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        URL_SAFE_LENIENT.encode(format!("{message}|{sig}"))
    }

    /// Checks a token's encoding, signature and expiry (with `leeway`) at unix second `now`.
    ///
    /// The room binding is checked by [`Verifier::verify_for_room`]; this is the part that needs no
    /// request context (the hooks service uses it for RTMP plays too).
    pub fn verify(&self, token: &str, now: u64, leeway: Duration) -> Result<Grant, Rejection> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(Rejection::Malformed);
        }
        // A token is at most 512 characters, so its payload fits in 384 bytes on the stack.
        let mut buf = [0u8; MAX_TOKEN_LEN * 3 / 4 + 3];
        let len = decode_lenient(token.as_bytes(), &mut buf)?;
        let payload = &buf[..len];

        let fields = split_fields(payload)?;
        let room_id = parse_canonical_u64(fields.room).ok_or(Rejection::Malformed)?;
        let expires_at = parse_canonical_u64(fields.exp).ok_or(Rejection::Malformed)?;
        let mut sig = [0u8; SIG_HEX_LEN / 2];
        hex::decode_to_slice(fields.sig, &mut sig).map_err(|_| Rejection::Malformed)?;

        let message = &payload[..fields.room.len() + 1 + fields.exp.len()];
        let signed_by_any_key = self.macs.iter().any(|mac| {
            let mut mac = mac.clone();
            mac.update(message);
            // `verify_slice` compares in constant time.
            mac.verify_slice(&sig).is_ok()
        });
        if !signed_by_any_key {
            return Err(Rejection::BadSignature);
        }
        if now > expires_at.saturating_add(leeway.as_secs()) {
            return Err(Rejection::Expired);
        }
        Ok(Grant {
            room_id,
            expires_at,
        })
    }
}

/// A token verifier bound to its configuration: keys plus leeway.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: TokenKeys,
    leeway: Duration,
}

impl Verifier {
    /// Creates a verifier that tolerates tokens up to `leeway` past their expiry.
    pub fn new(keys: TokenKeys, leeway: Duration) -> Self {
        Self { keys, leeway }
    }

    /// The keys this verifier accepts.
    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// The configured expiry leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` (if any) for the room that the request path names.
    pub fn verify_for_room(
        &self,
        token: Option<&str>,
        path_room_id: u64,
        now: u64,
    ) -> Result<Grant, Rejection> {
        let token = token.ok_or(Rejection::Missing)?;
        let grant = self.keys.verify(token, now, self.leeway)?;
        if grant.room_id != path_room_id {
            return Err(Rejection::WrongRoom);
        }
        Ok(grant)
    }
}

fn decode_lenient(token: &[u8], out: &mut [u8]) -> Result<usize, Rejection> {
    // The alphabet is chosen by its distinctive characters; a token that mixes both is malformed.
    let url_safe = token.iter().any(|b| *b == b'-' || *b == b'_');
    let standard = token.iter().any(|b| *b == b'+' || *b == b'/');
    let engine = match (url_safe, standard) {
        (true, true) => return Err(Rejection::Malformed),
        (false, true) => &STANDARD_LENIENT,
        _ => &URL_SAFE_LENIENT,
    };
    engine
        .decode_slice(token, out)
        .map_err(|_| Rejection::Malformed)
}

struct Fields<'a> {
    room: &'a [u8],
    exp: &'a [u8],
    sig: &'a [u8],
}

fn split_fields(payload: &[u8]) -> Result<Fields<'_>, Rejection> {
    if !payload.is_ascii() {
        return Err(Rejection::Malformed);
    }
    let mut parts = payload.split(|b| *b == b'|');
    let (Some(room), Some(exp), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    if sig.len() != SIG_HEX_LEN {
        return Err(Rejection::Malformed);
    }
    Ok(Fields { room, exp, sig })
}

/// Parses an unsigned decimal with no sign, no leading zeros and no whitespace.
pub(crate) fn parse_canonical_u64(digits: &[u8]) -> Option<u64> {
    match digits {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ => digits.iter().try_fold(0u64, |acc, d| {
            if !d.is_ascii_digit() {
                return None;
            }
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        }),
    }
}

/// Parses a room id as it appears in a URL path segment (canonical decimal).
pub fn parse_room_id(segment: &str) -> Option<u64> {
    parse_canonical_u64(segment.as_bytes())
}

/// The value of query parameter `name` as the viewer (or publisher) wrote it: the first
/// occurrence, percent-decoded, with `+` kept as `+`. Tolerates a leading `?` and a trailing
/// `#fragment` (SRS appends one to its `param`).
///
/// Form decoding would turn `+` into a space, which breaks a standard-alphabet token pasted
/// unencoded; tokens and stream keys never contain spaces, so a `+` is taken literally. Every
/// component that reads a token (or stream key) from a query uses this one function, so they
/// all agree on what the token is. `None` when the parameter is absent or its value does not
/// decode to UTF-8.
pub fn token_from_query(query: &str, name: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let query = query.split_once('#').map_or(query, |(before, _)| before);
    let value = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode_str(key).decode_utf8().ok()? == name).then_some(value)
    })?;
    percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|value| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> TokenKeys {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        TokenKeys::new(&secrets).unwrap()
    }

    #[test]
    fn canonical_decimals() {
        assert_eq!(parse_canonical_u64(b"0"), Some(0));
        assert_eq!(parse_canonical_u64(b"42"), Some(42));
        assert_eq!(parse_canonical_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"00",
            b"042",
            b"+42",
            b"-1",
            b" 42",
            b"4 2",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_canonical_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mint_then_verify() {
        let keys = keys(&["k1"]);
        let token = keys.mint(42, 1_000);
        let verifier = Verifier::new(keys, Duration::ZERO);
        assert_eq!(
            verifier.verify_for_room(Some(&token), 42, 1_000),
            Ok(Grant {
                room_id: 42,
                expires_at: 1_000
            })
        );
        assert_eq!(
            verifier.verify_for_room(Some(&token), 42, 1_001),
            Err(Rejection::Expired)
        );
        assert_eq!(
            verifier.verify_for_room(None, 42, 1_000),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn mixed_alphabets_are_malformed() {
        let keys = keys(&["k1"]);
        assert_eq!(
            keys.verify("ab-c+d", 0, Duration::ZERO),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn empty_keys_are_refused() {
        assert_eq!(TokenKeys::new(&[]).err(), Some(KeyError::NoKeys));
        assert_eq!(
            TokenKeys::new(&[Secret::new("a"), Secret::new("")]).err(),
            Some(KeyError::EmptyKey(1))
        );
    }

    #[test]
    fn debug_does_not_print_keys() {
        let printed = format!("{:?}", keys(&["super-secret"]));
        assert!(!printed.contains("super-secret"));
    }

    #[test]
    fn tokens_come_from_the_first_occurrence_with_plus_kept() {
        assert_eq!(
            token_from_query("token=a+b/c=", "token").as_deref(),
            Some("a+b/c=")
        );
        assert_eq!(
            token_from_query("?token=a%2Bb%2F", "token").as_deref(),
            Some("a+b/")
        );
        assert_eq!(
            token_from_query("x=1&token=first&token=second", "token").as_deref(),
            Some("first")
        );
        assert_eq!(
            token_from_query("?key=abc#frag", "key").as_deref(),
            Some("abc")
        );
        assert_eq!(token_from_query("token", "token").as_deref(), Some(""));
        assert_eq!(token_from_query("tok%65n=v", "token").as_deref(), Some("v"));
        assert_eq!(token_from_query("tokens=x&xtoken=y", "token"), None);
        assert_eq!(token_from_query("", "token"), None);
        assert_eq!(token_from_query("#token=x", "token"), None);
        assert_eq!(token_from_query("token=%FF", "token"), None);
    }
}
