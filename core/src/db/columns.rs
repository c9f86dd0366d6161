//! The widths of the text columns that callers fill from outside input, as the MySQL/MariaDB
//! migrations declare them (`VARCHAR(n)` counts characters; SQLite has no limit). A value is
//! checked against its column before any query, so that oversized or garbled input is a bad
//! request on every backend, never a database error.

/// `streams.origin_kind`.
pub const ORIGIN_KIND: usize = 16;
/// `streams.origin_server_id`.
pub const ORIGIN_SERVER_ID: usize = 128;
/// `streams.origin_service_id`.
pub const ORIGIN_SERVICE_ID: usize = 64;
/// `streams.origin_client_id`.
pub const ORIGIN_CLIENT_ID: usize = 128;
/// `streams.origin_stream_id`.
pub const ORIGIN_STREAM_ID: usize = 128;
/// `streams.publisher_ip`.
pub const PUBLISHER_IP: usize = 64;
/// `streams.origin_schema`.
pub const ORIGIN_SCHEMA: usize = 16;
/// `streams.record_url` and `interrupted_recordings.directory`.
pub const RECORD_URL: usize = 2048;

/// Why a value does not fit its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// More characters than the column holds.
    #[error("is longer than {0} characters")]
    TooLong(usize),
    /// A control character (NUL, newline, …): no identifier or path livegate stores has one.
    #[error("contains a control character")]
    ControlCharacter,
}

/// Checks `value` for a text column of `max` characters (the columns are `utf8mb4`, so any
/// Rust string's characters are storable; control characters are refused all the same).
pub fn check_text(value: &str, max: usize) -> Result<(), ColumnError> {
    // Cheap bound first: a string of at most `max` bytes has at most `max` characters.
    if value.len() > max && value.chars().count() > max {
        return Err(ColumnError::TooLong(max));
    }
    if value.chars().any(char::is_control) {
        return Err(ColumnError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_not_bytes_are_counted() {
        assert_eq!(check_text("abc", 3), Ok(()));
        assert_eq!(check_text("éé", 2), Ok(()));
        assert_eq!(check_text("abcd", 3), Err(ColumnError::TooLong(3)));
        assert_eq!(check_text("a\0b", 3), Err(ColumnError::ControlCharacter));
        assert_eq!(check_text("a\nb", 3), Err(ColumnError::ControlCharacter));
    }
}
