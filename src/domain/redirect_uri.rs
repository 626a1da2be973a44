//! Redirect URIs (RFC 6749 §3.1.2, RFC 9700 §4.1.3, RFC 8252 §7.3).
//!
//! Registration accepts absolute URIs without fragment: https anywhere, http only
//! on loopback, and private-use schemes (`com.example.app:/cb`) for native apps.
//! Matching is byte-for-byte; the only leeway is the port of a loopback IP
//! redirect (`http://127.0.0.1:{any}/path`, `http://[::1]:{any}/path`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("not an absolute URI")]
    NotAbsolute,
    #[error("must not contain a fragment")]
    Fragment,
    #[error("http is allowed only for loopback addresses; use https")]
    InsecureHttp,
    #[error("must not contain user information")]
    UserInfo,
    #[error("must not contain whitespace, backslashes or control characters")]
    Characters,
    #[error("this scheme cannot be used for redirects")]
    Scheme,
}

const LOOPBACK_PREFIXES: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

impl RedirectUri {
    /// Parses a URI for registration.
    pub fn parse(raw: &str) -> Result<Self, RedirectUriError> {
        if raw.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(RedirectUriError::Characters);
        }
        let url = url::Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d == "localhost",
                    None => false,
                };
                if !loopback {
                    return Err(RedirectUriError::InsecureHttp);
                }
            }
            "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ftp" | "ws" | "wss" => {
                return Err(RedirectUriError::Scheme);
            }
            // Private-use URI schemes must contain a dot (RFC 8252 §7.1).
            scheme if scheme.contains('.') => {}
            _ => return Err(RedirectUriError::Scheme),
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does the `requested` URI (as sent, unparsed) match this registered one?
    pub fn matches(&self, requested: &str) -> bool {
        if self.0 == requested {
            return true;
        }
        // RFC 8252 §7.3: loopback IP redirects may use any port.
        for prefix in LOOPBACK_PREFIXES {
            if let (Some(registered), Some(asked)) = (self.0.strip_prefix(prefix), requested.strip_prefix(prefix)) {
                return strip_port(registered).is_some_and(|r| Some(r) == strip_port(asked));
            }
        }
        false
    }
}

/// `:8080/cb` → `/cb`, `/cb` → `/cb`; `None` if what follows the host is neither,
/// or the port is outside 1–65535 or not written canonically.
fn strip_port(rest: &str) -> Option<&str> {
    match rest.strip_prefix(':') {
        Some(after) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            // A port in 1–65535 written canonically: no leading zero (`:0080`), not 0.
            let port = after[..digits].parse::<u16>().ok().filter(|p| *p != 0);
            if port.is_none() || after.starts_with('0') {
                return None;
            }
            let rest = &after[digits..];
            (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some(rest)
        }
        None => (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some(rest),
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = RedirectUriError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RedirectUri> for String {
    fn from(value: RedirectUri) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(RedirectUri::parse("https://app.example.com/cb").is_ok());
        assert!(RedirectUri::parse("http://127.0.0.1:8080/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]/cb").is_ok());
        assert!(RedirectUri::parse("com.example.app:/oauth2redirect").is_ok());
        assert_eq!(
            RedirectUri::parse("http://app.example.com/cb"),
            Err(RedirectUriError::InsecureHttp)
        );
        assert_eq!(
            RedirectUri::parse("https://app.example.com/cb#x"),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(RedirectUri::parse("/cb"), Err(RedirectUriError::NotAbsolute));
        assert_eq!(RedirectUri::parse("javascript:alert(1)"), Err(RedirectUriError::Scheme));
        assert_eq!(
            RedirectUri::parse("https://u:p@app.example.com/cb"),
            Err(RedirectUriError::UserInfo)
        );
        assert_eq!(
            RedirectUri::parse("https://app.example.com/c b"),
            Err(RedirectUriError::Characters)
        );
    }

    #[test]
    fn exact_match_with_loopback_port_leeway() {
        let web = RedirectUri::parse("https://app.example.com/cb").unwrap();
        assert!(web.matches("https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb?x=1",
        ] {
            assert!(!web.matches(bad), "{bad}");
        }
        let native = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        assert!(native.matches("http://127.0.0.1:51234/cb"));
        assert!(native.matches("http://127.0.0.1/cb"));
        assert!(!native.matches("http://127.0.0.1:51234/cb/"));
        assert!(!native.matches("http://127.0.0.1:51234@evil.example/cb"));
        assert!(!native.matches("http://127.0.0.1.evil.example/cb"));
        assert!(!native.matches("http://127.0.0.1:/cb"));
    }
}
