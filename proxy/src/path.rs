//! Request path safety: what is refused before any route is looked at.

use std::borrow::Cow;

/// Why a request path is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// `..` as a path segment, literally or percent-encoded.
    #[error("path traversal")]
    Traversal,
    /// A NUL byte, literally or as `%00`.
    #[error("NUL byte in path")]
    Nul,
    /// An encoded `/` or `\`, or a literal backslash: ways to smuggle separators past a router.
    #[error("encoded separator in path")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEncoding,
    /// An encoded `%`: a path meant to be decoded twice.
    #[error("double percent-encoding")]
    DoubleEncoding,
}

/// Checks a raw request path and returns it percent-decoded.
///
/// Media paths never need encoded separators, dot segments, double encoding or control bytes,
/// so anything of the sort is refused outright rather than normalised: the origin, which
/// decodes once, must see the same path that was authorised.
pub fn check_path(raw: &str) -> Result<Cow<'_, str>, UnsafePath> {
    if !raw.contains(['%', '\\', '\0']) {
        return if has_dot_segment(raw) {
            Err(UnsafePath::Traversal)
        } else {
            Ok(Cow::Borrowed(raw))
        };
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UnsafePath::BadEncoding)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UnsafePath::BadEncoding)?;
            match value {
                0 => return Err(UnsafePath::Nul),
                b'/' | b'\\' => return Err(UnsafePath::EncodedSeparator),
                b'%' => return Err(UnsafePath::DoubleEncoding),
                _ => decoded.push(value),
            }
            i += 3;
        } else {
            match byte {
                0 => return Err(UnsafePath::Nul),
                b'\\' => return Err(UnsafePath::EncodedSeparator),
                _ => decoded.push(byte),
            }
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| UnsafePath::BadEncoding)?;
    if has_dot_segment(&decoded) {
        return Err(UnsafePath::Traversal);
    }
    Ok(Cow::Owned(decoded))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == ".." || segment == ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(
            check_path("/live/../etc/passwd"),
            Err(UnsafePath::Traversal)
        );
        assert_eq!(check_path("/live/%2e%2e/x.flv"), Err(UnsafePath::Traversal));
        assert_eq!(check_path("/live/%2E./x.flv"), Err(UnsafePath::Traversal));
        assert_eq!(
            check_path("/live/..%2fx.flv"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(check_path("/live/42%00.flv"), Err(UnsafePath::Nul));
        assert_eq!(
            check_path("/live\\42.flv"),
            Err(UnsafePath::EncodedSeparator)
        );
        assert_eq!(check_path("/live/%zz.flv"), Err(UnsafePath::BadEncoding));
        assert_eq!(
            check_path("/live/%252e%252e/x.flv"),
            Err(UnsafePath::DoubleEncoding)
        );
        assert_eq!(check_path("/live/./42.flv"), Err(UnsafePath::Traversal));
        assert_eq!(check_path("/live/4%32.flv").unwrap(), "/live/42.flv");
        assert_eq!(check_path("/live/a..b.flv").unwrap(), "/live/a..b.flv");
        assert!(matches!(check_path("/live/42.flv"), Ok(Cow::Borrowed(_))));
    }
}
