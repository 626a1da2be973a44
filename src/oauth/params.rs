//! Request parameters as RFC 6749 §3.1 wants them: form-urlencoded, each at most
//! once (a repeated parameter is an error), and an empty value counts as absent.
//! Malformed encoding (an empty pair as in `&&`, a pair without `=` or without a
//! name, a `%` not followed by two hex digits, bytes that are not UTF-8) is
//! refused with `invalid_request` rather than guessed at.

use std::collections::HashMap;

use crate::oauth::error::OAuthError;

#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        check_encoding(encoded)?;
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(encoded) {
            if value.is_empty() {
                continue;
            }
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(OAuthError::InvalidRequest(format!("parameter `{key}` is repeated")));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("missing parameter `{key}`")))
    }

    pub fn into_map(self) -> HashMap<String, String> {
        self.0
    }
}

/// RFC 6749 Appendix B / WHATWG `application/x-www-form-urlencoded`, strictly.
fn check_encoding(encoded: &[u8]) -> Result<(), OAuthError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let malformed = |what: &str| OAuthError::InvalidRequest(format!("malformed form encoding: {what}"));
    for pair in encoded.split(|b| *b == b'&') {
        let Some(eq) = pair.iter().position(|b| *b == b'=') else {
            return Err(malformed(if pair.is_empty() {
                "empty parameter (`&&`)"
            } else {
                "parameter without `=`"
            }));
        };
        if eq == 0 {
            return Err(malformed("parameter without a name"));
        }
        let mut i = 0;
        while i < pair.len() {
            if pair[i] == b'%' {
                let hex = pair.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                if hex.is_none() {
                    return Err(malformed("`%` not followed by two hex digits"));
                }
                i += 3;
            } else {
                i += 1;
            }
        }
        for part in [&pair[..eq], &pair[eq + 1..]] {
            let decoded: Vec<u8> = percent_decode_plus(part);
            if std::str::from_utf8(&decoded).is_err() {
                return Err(malformed("not UTF-8"));
            }
        }
    }
    Ok(())
}

/// Decodes `+` and `%XX` (escapes already checked to be two hex digits).
fn percent_decode_plus(part: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'%' if i + 2 < part.len() => {
                out.push(hex(part[i + 1]) << 4 | hex(part[i + 2]));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_is_an_error_and_empty_is_absent() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=1&b=&c=%20x").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some(" x"));
    }

    #[test]
    fn malformed_encoding_is_refused() {
        for bad in [
            &b"&&&==&grant_type=client_credentials&&"[..],
            b"grant_type=client_credentials&",
            b"a=%zz",
            b"a=%4",
            b"=x",
            b"a",
            b"a=%ff",
        ] {
            assert!(Params::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(Params::parse(b"").unwrap().get("a").is_none());
        assert_eq!(Params::parse(b"a=b%3Dc=d+e").unwrap().get("a"), Some("b=c=d e"));
    }
}
