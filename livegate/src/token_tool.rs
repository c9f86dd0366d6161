//! `livegate token mint|verify`: play tokens by hand — minting one for a room, and explaining
//! why a viewer's URL is refused (room, expiry, which key signed it, or the exact reason).

use std::time::Duration;

use livegate_core::token::{parse_room_id, token_from_query, Rejection, TokenKeys};
use livegate_core::{unix_now, Secret};

/// What verifying a URL or token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted: for `room`, valid through `expires_at`, signed by key number `key` (0 is the
    /// newest).
    Accepted {
        /// The token's room.
        room: u64,
        /// Its expiry, unix seconds.
        expires_at: u64,
        /// Which key signed it.
        key: usize,
    },
    /// Refused, and why.
    Refused {
        /// The reason, as the proxy counts it.
        reason: Rejection,
        /// What the token says, when it could be read.
        detail: String,
    },
}

/// Mints a token for `room` valid for `ttl` from now, signed with the first of `keys`.
pub fn mint(keys: &[Secret], room: u64, ttl: Duration) -> Result<(String, u64), String> {
    let keys = TokenKeys::new(keys).map_err(|err| err.to_string())?;
    let expires_at = unix_now() + ttl.as_secs();
    Ok((keys.mint(room, expires_at), expires_at))
}

/// Verifies `input` — a play URL (`…/live/42.flv?token=…`, the room read from the path's last
/// segment before its extension or `-`) or a bare token (checked without a room) — as the
/// proxy would, at unix second `now`.
pub fn verify(keys: &[Secret], input: &str, leeway: Duration, now: u64) -> Result<Verdict, String> {
    let (token, path_room) = match url::Url::parse(input) {
        Ok(url) => {
            let token = url
                .query()
                .and_then(|query| token_from_query(query, "token"));
            (token, room_in_path(url.path()))
        }
        Err(_) => (Some(input.trim().to_owned()), None),
    };
    let Some(token) = token else {
        return Ok(Verdict::Refused {
            reason: Rejection::Missing,
            detail: "the URL has no token parameter".to_owned(),
        });
    };
    // Which key signed it: each key on its own, newest first.
    let mut last = Rejection::BadSignature;
    for (index, key) in keys.iter().enumerate() {
        let one = TokenKeys::new(std::slice::from_ref(key)).map_err(|err| err.to_string())?;
        match one.verify(&token, now, leeway) {
            Ok(grant) => {
                if let Some(room) = path_room.filter(|room| *room != grant.room_id) {
                    return Ok(Verdict::Refused {
                        reason: Rejection::WrongRoom,
                        detail: format!(
                            "the token is for room {}, the URL names room {room}",
                            grant.room_id
                        ),
                    });
                }
                return Ok(Verdict::Accepted {
                    room: grant.room_id,
                    expires_at: grant.expires_at,
                    key: index,
                });
            }
            Err(Rejection::BadSignature) => {}
            Err(reason) => {
                last = reason;
                break;
            }
        }
    }
    let detail = match last {
        Rejection::Expired => "the token's expiry has passed".to_owned(),
        Rejection::Malformed => "not a v1 token (base64 of room|exp|64 hex digits)".to_owned(),
        _ => format!("signed by none of the {} key(s) given", keys.len()),
    };
    Ok(Verdict::Refused {
        reason: last,
        detail,
    })
}

/// The room a play path names: `/live/42.flv`, `/live/42.m3u8`, `/live/42-7.ts`,
/// `/live/42.live.flv`, `/live/42/hls.m3u8`.
fn room_in_path(path: &str) -> Option<u64> {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next()?;
    let stem = last.split(['.', '-']).next().unwrap_or(last);
    parse_room_id(stem).or_else(|| segments.next().and_then(parse_room_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Secret> {
        vec![Secret::new("newest-key"), Secret::new("older-key")]
    }

    #[test]
    fn a_minted_url_is_explained_and_a_bad_one_says_why() {
        let older = TokenKeys::new(&[Secret::new("older-key")]).unwrap();
        let token = older.mint(42, 2_000_000_000);
        let url = format!("http://edge/live/42.flv?token={token}");
        assert_eq!(
            verify(&keys(), &url, Duration::ZERO, 1_900_000_000).unwrap(),
            Verdict::Accepted {
                room: 42,
                expires_at: 2_000_000_000,
                key: 1
            }
        );
        let wrong = format!("http://edge/live/43-7.ts?token={token}");
        assert!(matches!(
            verify(&keys(), &wrong, Duration::ZERO, 1_900_000_000).unwrap(),
            Verdict::Refused {
                reason: Rejection::WrongRoom,
                ..
            }
        ));
        assert!(matches!(
            verify(&keys(), &token, Duration::ZERO, 2_100_000_000).unwrap(),
            Verdict::Refused {
                reason: Rejection::Expired,
                ..
            }
        ));
        assert!(matches!(
            verify(&[Secret::new("other")], &token, Duration::ZERO, 1).unwrap(),
            Verdict::Refused {
                reason: Rejection::BadSignature,
                ..
            }
        ));
        assert!(matches!(
            verify(&keys(), "http://edge/live/42.flv", Duration::ZERO, 1).unwrap(),
            Verdict::Refused {
                reason: Rejection::Missing,
                ..
            }
        ));
        assert_eq!(room_in_path("/live/42/hls.m3u8"), Some(42));
        assert_eq!(room_in_path("/live/42.live.flv"), Some(42));
    }

    #[test]
    fn minted_tokens_verify() {
        let (token, expires_at) = mint(&keys(), 7, Duration::from_secs(60)).unwrap();
        assert_eq!(
            verify(&keys(), &token, Duration::ZERO, unix_now()).unwrap(),
            Verdict::Accepted {
                room: 7,
                expires_at,
                key: 0
            }
        );
    }
}
