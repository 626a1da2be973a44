//! Page responses the handlers share: rendering a page, the redirects of the
//! sign-in flow (signed in, to the second step, to sign in again, the pending
//! second step), the sign-in and second-step pages, the signed-in layout, and
//! how a wait is said.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::authn::session::Authenticated;
use crate::authn::signin::{self, NewSession, Pending, SecondStep};
use crate::authn::{mfa, risk, session};
use crate::db::models::users::UserRow;
use crate::http::cookies;
use crate::http::csrf::Csrf;
use crate::http::error::PageError;
use crate::http::extractors::second_step_cookie;
use crate::http_common::no_store;
use crate::state::AppState;
use crate::views::{Layout, LoginPage, MfaCodePage};

/// Renders a page as an uncacheable HTML response.
pub fn page(template: &impl Template) -> Result<HttpResponse, PageError> {
    Ok(HttpResponse::Ok()
        .insert_header(no_store())
        .content_type("text/html; charset=utf-8")
        .body(template.render()?))
}

/// A page with forms: `page`, plus the CSRF cookie when the `Csrf` extractor minted one.
pub fn form_page(state: &AppState, csrf: &Csrf, template: &impl Template) -> Result<HttpResponse, PageError> {
    let mut response = page(template)?;
    csrf.apply(state, &mut response);
    Ok(response)
}

/// 303 to `location`, uncacheable.
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header(no_store())
        .finish()
}

pub fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// "5 seconds", "2 minutes" and so on.
pub fn wait_phrase(seconds: i64) -> String {
    match seconds {
        s if s <= 1 => "1 second".to_owned(),
        s if s < 90 => format!("{s} seconds"),
        s => format!("{} minutes", (s + 59) / 60),
    }
}

/// The redirect after a completed sign-in: the session cookie, the known-device
/// cookie (when there is a device id), and `Location: return_to`.
pub fn signed_in(state: &AppState, session: &NewSession) -> Result<HttpResponse, PageError> {
    let mut response = redirect(&session.return_to);
    response
        .add_cookie(&cookies::build(
            &state.config,
            cookies::SESSION,
            session.token.expose().to_owned(),
        ))
        .map_err(|e| PageError::Internal(e.into()))?;
    if let Some(device_id) = &session.device_id {
        let mut device = cookies::build(
            &state.config,
            cookies::DEVICE,
            risk::seal_device(&state.login_key, device_id),
        );
        device.set_max_age(CookieDuration::days(state.config.login.device_cookie_days));
        response
            .add_cookie(&device)
            .map_err(|e| PageError::Internal(e.into()))?;
    }
    Ok(response)
}

/// `signed_in` after a second step: the second step's cookie goes too.
pub fn second_step_passed(state: &AppState, session: &NewSession) -> Result<HttpResponse, PageError> {
    let mut response = signed_in(state, session)?;
    let _ = response.add_removal_cookie(&cookies::removal(&state.config, cookies::MFA));
    Ok(response)
}

/// Sends the person to `/login/mfa` with the second step's cookie.
pub fn to_second_step(state: &AppState, challenge: String) -> HttpResponse {
    let mut response = redirect("/login/mfa");
    let mut cookie = cookies::build(&state.config, cookies::MFA, challenge);
    cookie.set_max_age(CookieDuration::seconds(mfa::CHALLENGE_TTL_SECS));
    let _ = response.add_cookie(&cookie);
    response
}

/// Asks for the password again (a sensitive change after `RECENT_AUTH_SECS`),
/// then back to `return_to`.
pub fn reauthenticate(return_to: &str) -> HttpResponse {
    redirect(&format!("/login?prompt=login&return_to={}", urlencode(return_to)))
}

/// The layout of a signed-in page at `here`, with the session timer.
pub fn signed_in_layout(state: &AppState, title: &str, auth: &Authenticated, csrf: &Csrf, here: &str) -> Layout {
    Layout::signed_in(title, &auth.user.username, &csrf.token).with_timer(session::timer(state, &auth.session), here)
}

/// The sign-in page (`expired`: the "signed out after inactivity" variant).
pub fn sign_in_page(
    state: &AppState,
    csrf: &Csrf,
    username: &str,
    return_to: String,
    error: Option<String>,
    expired: bool,
) -> Result<HttpResponse, PageError> {
    let notice = expired.then(|| "For your security you were signed out after a period of inactivity.".to_owned());
    form_page(
        state,
        csrf,
        &LoginPage {
            layout: Layout::anonymous(if expired { "Session expired" } else { "Sign in" })
                .with_webauthn_if(state.webauthn.is_some()),
            expired,
            csrf: csrf.pre_session.clone(),
            username: username.chars().take(64).collect(),
            return_to,
            error,
            notice,
        },
    )
}

/// This browser's pending second step, or the redirect to answer instead: to
/// `/login` (none, or the account was disabled meanwhile) or to `/login?expired=1`.
pub async fn pending_second_step(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Result<Pending, HttpResponse>, PageError> {
    Ok(match signin::pending(state, second_step_cookie(req, state)).await? {
        SecondStep::Pending(pending) => Ok(*pending),
        SecondStep::None => Err(redirect("/login")),
        SecondStep::Expired => Err(redirect("/login?expired=1")),
    })
}

/// The second-step page: a code field and/or a security key button, by what the person has set up.
pub async fn second_step_page(
    state: &AppState,
    csrf: &Csrf,
    user: &UserRow,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let factors = mfa::factors(&state.db, &user.id).await?;
    let mut response = page(&MfaCodePage {
        layout: Layout::anonymous("Two-step verification").with_webauthn_if(state.webauthn.is_some()),
        csrf: csrf.token.clone(),
        username: user.username.clone(),
        error,
        totp: factors.totp,
        passkey: factors.webauthn > 0,
        recovery: factors.recovery_codes > 0,
    })?;
    *response.status_mut() = status;
    csrf.apply(state, &mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::wait_phrase;

    #[test]
    fn waits_are_said_in_seconds_then_minutes() {
        assert_eq!(wait_phrase(0), "1 second");
        assert_eq!(wait_phrase(1), "1 second");
        assert_eq!(wait_phrase(45), "45 seconds");
        assert_eq!(wait_phrase(89), "89 seconds");
        assert_eq!(wait_phrase(90), "2 minutes");
        assert_eq!(wait_phrase(600), "10 minutes");
    }
}
