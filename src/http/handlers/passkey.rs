//! Security keys and passkeys (WebAuthn): the account pages that add, rename and
//! remove them, the second step of a sign-in with one, and passwordless sign-in.
//!
//! Each ceremony has two requests. `…/options` (POST, CSRF token in the body)
//! answers JSON for `navigator.credentials.create/get` and sets the
//! `oxidp_webauthn` cookie that binds the challenge to this browser; errors are
//! RFC 9457 problem+json. The browser's answer then comes back as an ordinary
//! form post (field `credential`), answered with a redirect or an HTML page.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::authn::session::Authenticated;
use crate::authn::signin::{self, PasswordlessRefused};
use crate::authn::webauthn::{self, PasskeyError, Started};
use crate::http::cookies;
use crate::http::csrf::{self, Csrf, CsrfForm};
use crate::http::error::{PageError, problem};
use crate::http::extractors::{ClientOrigin, SignedIn, safe_return_to, second_step_cookie, session_cookie};
use crate::http::pages::{
    self, form_page, pending_second_step, reauthenticate, redirect, second_step_page, signed_in_layout,
};
use crate::http_common::{Problem, no_store};
use crate::state::AppState;
use crate::views::{ConfirmPage, PasskeyNewPage};

const NEW_PATH: &str = "/account/passkeys/new";

#[derive(Deserialize)]
pub struct OptionsForm {
    csrf_token: String,
}

#[derive(Deserialize)]
pub struct CredentialForm {
    csrf_token: String,
    credential: String,
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf_token: String,
    name: String,
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf_token: String,
    name: String,
}

/// The options JSON plus the cookie that binds the ceremony to this browser.
fn options_response(state: &AppState, started: Started) -> HttpResponse {
    let mut cookie = cookies::build(&state.config, cookies::WEBAUTHN, started.token);
    cookie.set_max_age(CookieDuration::seconds(webauthn::CEREMONY_TTL_SECS));
    HttpResponse::Ok()
        .insert_header(no_store())
        .cookie(cookie)
        .json(started.options)
}

/// A refused options request as problem+json.
fn options_error(error: PasskeyError) -> HttpResponse {
    match error {
        PasskeyError::ReauthenticationRequired => problem(
            StatusCode::FORBIDDEN,
            "Adding a security key needs a sign-in within the last 5 minutes: reload the page.",
        ),
        PasskeyError::NoCredentials => problem(StatusCode::CONFLICT, error.to_string()),
        PasskeyError::Disabled => problem(StatusCode::NOT_FOUND, error.to_string()),
        PasskeyError::Db(db) if db.is_unavailable() => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is unavailable; retry later.",
        ),
        other => {
            tracing::error!(error = %other, "starting a webauthn ceremony failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred.")
        }
    }
}

/// CSRF for the JSON options requests: the refusal as problem+json, if any.
fn check_csrf(req: &HttpRequest, state: &AppState, token: &str) -> Option<HttpResponse> {
    csrf::verify(req, state, token).err().map(|_| csrf_refused())
}

fn csrf_refused() -> HttpResponse {
    problem(
        StatusCode::FORBIDDEN,
        "The request did not carry a valid form token: reload the page.",
    )
}

fn ceremony_token(req: &HttpRequest, state: &AppState) -> String {
    req.cookie(&cookies::name(&state.config, cookies::WEBAUTHN))
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

fn clear_ceremony(state: &AppState, response: &mut HttpResponse) {
    let _ = response.add_removal_cookie(&cookies::removal(&state.config, cookies::WEBAUTHN));
}

/// POST /login/passkey/options: a passwordless sign-in with a discoverable passkey.
pub async fn passwordless_options(
    req: HttpRequest,
    state: web::Data<AppState>,
    origin: ClientOrigin,
    form: web::Form<OptionsForm>,
) -> HttpResponse {
    // The sign-in page's form: its token is bound to the CSRF cookie alone.
    if csrf::verify_pre_session(&req, &state, &form.csrf_token).is_err() {
        return csrf_refused();
    }
    match signin::start_passwordless(&state, origin.0.ip.as_deref()).await {
        Ok(started) => options_response(&state, started),
        Err(PasswordlessRefused::RateLimited { retry_after }) => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts; wait and retry.",
        )
        .retry_after(retry_after)
        .response(),
        Err(PasswordlessRefused::Passkey(error)) => options_error(error),
    }
}

/// POST /login/passkey: finishes a passwordless sign-in.
pub async fn passwordless(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: Csrf,
    origin: ClientOrigin,
    form: web::Form<CredentialForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify_pre_session(&req, &state, &form.csrf_token)?;
    let return_to = safe_return_to(form.return_to.as_deref());
    let ceremony = ceremony_token(&req, &state);
    let previous = session_cookie(&req, &state);
    let message = match signin::with_passkey(&state, &ceremony, &form.credential, &return_to, origin.0, previous).await
    {
        Ok(session) => {
            let mut response = pages::signed_in(&state, &session)?;
            clear_ceremony(&state, &mut response);
            return Ok(response);
        }
        Err(error @ (PasskeyError::Db(_) | PasskeyError::Internal(_))) => return Err(error.into()),
        Err(PasskeyError::CeremonyExpired) => "The passkey request expired or was already used. Try again.",
        Err(_) => "That passkey could not be used to sign in. Use your password, or try another passkey.",
    };
    let mut response = pages::sign_in_page(&state, &csrf, "", return_to, Some(message.to_owned()), false)?;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    clear_ceremony(&state, &mut response);
    Ok(response)
}

/// POST /login/mfa/passkey/options: the second step with a security key or passkey.
pub async fn second_factor_options(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<OptionsForm>,
) -> HttpResponse {
    if let Some(refused) = check_csrf(&req, &state, &form.csrf_token) {
        return refused;
    }
    let token = second_step_cookie(&req, &state);
    match signin::start_second_step_with_key(&state, token.as_deref()).await {
        Ok(Some(started)) => options_response(&state, started),
        Ok(None) => problem(
            StatusCode::UNAUTHORIZED,
            "The sign-in has expired: sign in with your password again.",
        ),
        Err(error) => options_error(error),
    }
}

/// POST /login/mfa/passkey: finishes the second step; a new session with `amr` including `mfa`.
pub async fn second_factor(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: Csrf,
    origin: ClientOrigin,
    form: web::Form<CredentialForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    let pending = match pending_second_step(&req, &state).await? {
        Ok(pending) => pending,
        Err(redirect) => return Ok(redirect),
    };
    let ceremony = ceremony_token(&req, &state);
    let previous = session_cookie(&req, &state);
    let message =
        match signin::second_step_with_key(&state, &pending, &ceremony, &form.credential, origin.0, previous).await {
            Ok(session) => {
                let mut response = pages::second_step_passed(&state, &session)?;
                clear_ceremony(&state, &mut response);
                return Ok(response);
            }
            Err(error @ (PasskeyError::Db(_) | PasskeyError::Internal(_))) => return Err(error.into()),
            Err(PasskeyError::CeremonyExpired) => "The request expired or was already used. Try again.",
            Err(_) => "That security key or passkey could not be verified. Try again or use another one.",
        };
    let mut response = second_step_page(
        &state,
        &csrf,
        &pending.user,
        Some(message.to_owned()),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await?;
    clear_ceremony(&state, &mut response);
    Ok(response)
}

fn new_page(
    state: &AppState,
    auth: &Authenticated,
    csrf: &Csrf,
    name: &str,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    form_page(
        state,
        csrf,
        &PasskeyNewPage {
            layout: signed_in_layout(state, "Add a security key or passkey", auth, csrf, NEW_PATH)
                .with_webauthn_if(state.webauthn.is_some()),
            csrf: csrf.token.clone(),
            name: name.to_owned(),
            error,
        },
    )
}

/// GET /account/passkeys/new: registration needs a sign-in within 5 minutes.
pub async fn new(state: web::Data<AppState>, SignedIn(auth): SignedIn, csrf: Csrf) -> Result<HttpResponse, PageError> {
    if auth.require_recent(state.clock.now()).is_err() {
        return Ok(reauthenticate(NEW_PATH));
    }
    new_page(&state, &auth, &csrf, "", None)
}

/// POST /account/passkeys/options
pub async fn register_options(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    form: web::Form<OptionsForm>,
) -> HttpResponse {
    if let Some(refused) = check_csrf(&req, &state, &form.csrf_token) {
        return refused;
    }
    match webauthn::start_registration(state.webauthn_ceremony(), &auth.user, auth.session.auth_time).await {
        Ok(started) => options_response(&state, started),
        Err(error) => options_error(error),
    }
}

/// POST /account/passkeys: stores the new credential.
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    origin: ClientOrigin,
    form: web::Form<RegisterForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    let token = ceremony_token(&req, &state);
    let result = webauthn::finish_registration(
        state.webauthn_ceremony(),
        &auth.user,
        auth.session.auth_time,
        &token,
        &form.name,
        &form.credential,
        origin.0.ip.clone(),
    )
    .await;
    let message = match result {
        Ok(_) => {
            let mut response = redirect("/account?done=passkey-added");
            clear_ceremony(&state, &mut response);
            return Ok(response);
        }
        Err(PasskeyError::ReauthenticationRequired) => return Ok(reauthenticate(NEW_PATH)),
        Err(error @ (PasskeyError::Db(_) | PasskeyError::Internal(_))) => return Err(error.into()),
        Err(PasskeyError::InvalidName) => "Give it a name of 1 to 64 characters, such as “Work laptop”.",
        Err(PasskeyError::AlreadyRegistered) => "That security key or passkey is already registered.",
        Err(PasskeyError::CeremonyExpired) => "The request expired or was already used. Try again.",
        Err(_) => "The security key or passkey could not be verified, so it was not added. Try again.",
    };
    let mut response = new_page(&state, &auth, &csrf, &form.name, Some(message.to_owned()))?;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    clear_ceremony(&state, &mut response);
    Ok(response)
}

/// POST /account/passkeys/{id}/rename
pub async fn rename(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    path: web::Path<String>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    match webauthn::rename(&state.db, &auth.user.id, &path, &form.name).await {
        Ok(()) => Ok(redirect("/account?done=passkey-renamed")),
        Err(PasskeyError::InvalidName) => Err(PageError::BadRequest(
            "Give it a name of 1 to 64 characters.".to_owned(),
        )),
        Err(other) => Err(other.into()),
    }
}

/// GET /account/passkeys/{id}/delete: confirmation (after a recent sign-in).
pub async fn delete_confirm(
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let credential = webauthn::find(&state.db, &auth.user.id, &path).await?;
    let here = format!("/account/passkeys/{}/delete", credential.id);
    if auth.require_recent(state.clock.now()).is_err() {
        return Ok(reauthenticate(&here));
    }
    form_page(
        &state,
        &csrf,
        &ConfirmPage {
            layout: signed_in_layout(&state, "Remove a security key", &auth, &csrf, &here),
            csrf: csrf.token.clone(),
            heading: format!("Remove “{}”?", credential.name),
            message: "You will no longer be able to sign in with it.".to_owned(),
            action: here,
            button: "Remove".to_owned(),
        },
    )
}

/// POST /account/passkeys/{id}/delete
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    origin: ClientOrigin,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, form.token())?;
    match webauthn::delete(
        &state.db,
        state.clock.now(),
        &auth.user.id,
        &path,
        &auth.session.id,
        auth.session.auth_time,
        origin.0.ip.clone(),
    )
    .await
    {
        Ok(()) => Ok(redirect("/account?done=passkey-removed")),
        Err(PasskeyError::ReauthenticationRequired) => Ok(reauthenticate(&format!("/account/passkeys/{path}/delete"))),
        Err(other) => Err(other.into()),
    }
}
