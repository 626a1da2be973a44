//! Cookie names and attributes. On an https issuer every cookie is `Secure` and
//! carries the `__Host-` prefix (no Domain, Path=/), so no sibling host can set or read it.

use actix_web::cookie::{Cookie, SameSite, time::Duration};

use crate::config::Config;

pub const SESSION: &str = "oxidp_session";
pub const CSRF: &str = "oxidp_csrf";
/// Signed id of a browser that signed in before (risk signal, lockout exemption).
pub const DEVICE: &str = "oxidp_device";
/// The pending second step of a sign-in (5 minutes).
pub const MFA: &str = "oxidp_mfa";
/// Binds a pending WebAuthn ceremony (its challenge) to this browser (5 minutes).
pub const WEBAUTHN: &str = "oxidp_webauthn";
/// Binds pending /authorize requests to the browser that started them (browser session).
pub const AUTHORIZE: &str = "oxidp_authorize";

pub fn name(config: &Config, base: &str) -> String {
    if config.is_https() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

pub fn build(config: &Config, base: &str, value: String) -> Cookie<'static> {
    Cookie::build(name(config, base), value)
        .path("/")
        .http_only(true)
        .secure(config.is_https())
        .same_site(SameSite::Lax)
        .finish()
}

pub fn removal(config: &Config, base: &str) -> Cookie<'static> {
    let mut cookie = build(config, base, String::new());
    cookie.set_max_age(Duration::ZERO);
    cookie.set_expires(actix_web::cookie::Expiration::from(
        actix_web::cookie::time::OffsetDateTime::UNIX_EPOCH,
    ));
    cookie
}
