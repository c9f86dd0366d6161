//! Checks of client input, shared by the routes and the configuration. Each returns the
//! message a 400 (or a configuration problem) shows.

use ipnet::IpNet;

/// Longest username, in characters (`users.username` is `VARCHAR(64)`).
pub const USERNAME_MAX: usize = 32;
/// Longest room title, in characters (`rooms.title` is `VARCHAR(255)`).
pub const TITLE_MAX: usize = 255;
/// Most networks in a publisher allow-list (`rooms.publish_allow_cidrs` is `VARCHAR(1024)`).
pub const CIDRS_MAX: usize = 20;
/// Shortest password, in characters.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in characters (so at most 1 KiB of UTF-8): argon2 time must not grow
/// with what a client sends. Characters, not bytes, as JSON Schema's `maxLength` counts.
pub const PASSWORD_MAX: usize = 256;

/// 3 to 32 of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter or digit.
pub fn username(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if (3..=USERNAME_MAX).contains(&name.len()) && ok_chars && ok_start {
        Ok(())
    } else {
        Err(format!(
            "must be 3 to {USERNAME_MAX} lowercase letters, digits, `_`, `.` or `-`, \
             starting with a letter or digit"
        ))
    }
}

/// 8 to 256 characters.
pub fn password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN {
        Err(format!("must be at least {PASSWORD_MIN} characters"))
    } else if chars > PASSWORD_MAX {
        Err(format!("must be at most {PASSWORD_MAX} characters"))
    } else {
        Ok(())
    }
}

/// Longest gift name, in characters (`gifts.name` is `VARCHAR(64)`).
pub const GIFT_NAME_MAX: usize = 64;
/// Highest gift price, in the smallest currency unit: far below `i64::MAX`, so that sums of
/// many stay exact (and exact as the leaderboard's f64 scores).
pub const PRICE_MAX: i64 = 100_000_000;

/// A currency: three uppercase ASCII letters (ISO 4217's form).
pub fn currency(code: &str) -> Result<(), String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err("must be a three-letter ISO 4217 code such as EUR".to_owned())
    }
}

/// A gift name: 1 to 64 characters, no control characters.
pub fn gift_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    livegate_core::db::columns::check_text(name, GIFT_NAME_MAX).map_err(|err| err.to_string())
}

/// A price: 1 to 100000000 in the smallest currency unit.
pub fn price(price: i64) -> Result<(), String> {
    if (1..=PRICE_MAX).contains(&price) {
        Ok(())
    } else {
        Err(format!(
            "must be an integer from 1 to {PRICE_MAX}, in the smallest unit of the currency"
        ))
    }
}

/// A title: at most 255 characters, no control characters.
pub fn title(title: &str) -> Result<(), String> {
    livegate_core::db::columns::check_text(title, TITLE_MAX).map_err(|err| err.to_string())
}

/// A publisher allow-list: up to 20 networks (`203.0.113.0/24`, `2001:db8::/32`, or a bare
/// address); returns the comma-separated form the hooks service reads, `None` for an empty
/// list (anywhere).
pub fn cidrs(list: &[String]) -> Result<Option<String>, String> {
    if list.len() > CIDRS_MAX {
        return Err(format!("must list at most {CIDRS_MAX} networks"));
    }
    let mut parsed = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let entry = entry.trim();
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("entry #{index} is not a network such as 203.0.113.0/24"))?;
        // Stored as the network itself: `10.1.2.3/8` is `10.0.0.0/8`.
        parsed.push(net.trunc().to_string());
    }
    Ok((!parsed.is_empty()).then(|| parsed.join(",")))
}

/// One network of an allow-list, as [`cidrs`] parses it: an IPv4 or IPv6 address with an
/// optional prefix length.
const NETWORK_PATTERN: &str = concat!(
    "^(",
    // IPv4, then its prefix: no leading zeros, as Rust parses them.
    "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "(/(3[0-2]|[12]?[0-9]))?",
    "|(",
    // IPv6 in its full, compressed and IPv4-suffixed forms.
    "([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,7}:",
    "|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}",
    "|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    "|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}",
    "|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    "|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}",
    "|:((:[0-9a-fA-F]{1,4}){1,7}|:)",
    "|::(ffff(:0{1,4})?:)?((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "|([0-9a-fA-F]{1,4}:){1,4}:((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    ")(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?",
    ")$",
);

/// The schema of a publisher allow-list as [`cidrs`] takes it.
pub fn cidrs_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NETWORK_PATTERN)),
        )
        .max_items(Some(CIDRS_MAX))
        .description(Some(
            "Networks publishers may push from (`203.0.113.0/24`, `2001:db8::/32` or an \
             address); empty: anywhere.",
        ))
        .build()
}

/// [`cidrs_schema`], or `null` (a change that keeps the list).
pub fn cidrs_or_null_schema() -> utoipa::openapi::Array {
    let mut schema = cidrs_schema();
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::Array,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// The stored allow-list as a list.
pub fn cidrs_list(stored: Option<&str>) -> Vec<String> {
    stored
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username("a.b-c_9").is_ok());
        assert!(username("al").is_err());
        assert!(username("Alice").is_err());
        assert!(username("_alice").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("al ice").is_err());
    }

    #[test]
    fn allow_lists() {
        assert_eq!(cidrs(&[]), Ok(None));
        assert_eq!(
            cidrs(&["10.0.0.0/8".into(), "::1".into()]),
            Ok(Some("10.0.0.0/8,::1/128".into()))
        );
        assert!(cidrs(&["nope".into()]).is_err());
        assert_eq!(cidrs(&["10.1.2.3/8".into()]), Ok(Some("10.0.0.0/8".into())));
        assert_eq!(cidrs_list(Some("10.0.0.0/8,::1/128")).len(), 2);
    }
}
