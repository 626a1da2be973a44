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

use crate::authn::mfa;
use crate::authn::session::{self, Authenticated};
use crate::authn::webauthn::{self, PasskeyError, Started};
use crate::http::cookies;
use crate::http::csrf::{self, Csrf};
use crate::http::error::{PageError, problem};
use crate::http::extractors::{ClientOrigin, SignedIn, safe_return_to, session_cookie};
use crate::http::handlers::login::signed_in_response;
use crate::http::handlers::mfa::{
    Pending, challenge_token, code_page, complete_second_step, pending_second_step, reauthenticate, redirect,
    signed_in_layout,
};
use crate::http::handlers::page;
use crate::state::AppState;
use crate::views::{ConfirmPage, Layout, LoginPage, PasskeyNewPage};

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

impl From<PasskeyError> for PageError {
    fn from(error: PasskeyError) -> Self {
        match error {
            PasskeyError::Db(db) => db.into(),
            PasskeyError::Internal(e) => PageError::Internal(e),
            PasskeyError::NotFound => PageError::NotFound,
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

/// The options JSON plus the cookie that binds the ceremony to this browser.
fn options_response(state: &AppState, started: Started) -> HttpResponse {
    let mut cookie = cookies::build(&state.config, cookies::WEBAUTHN, started.token);
    cookie.set_max_age(CookieDuration::seconds(webauthn::CEREMONY_TTL_SECS));
    HttpResponse::Ok()
        .insert_header(crate::http::error::no_store())
        .cookie(cookie)
        .json(started.options)
}

fn options_error(error: PasskeyError) -> HttpResponse {
    match error {
        PasskeyError::ReauthenticationRequired => problem(
            StatusCode::FORBIDDEN,
            "Adding a security key needs a sign-in within the last 5 minutes: reload the page.",
        ),
        PasskeyError::NoCredentials => problem(StatusCode::CONFLICT, &error.to_string()),
        PasskeyError::Disabled => problem(StatusCode::NOT_FOUND, &error.to_string()),
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
    let ip = origin.0.ip.clone().unwrap_or_else(|| "unknown".to_owned());
    if let Err(retry_after) = state.limiters.per_ip(&ip) {
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts; wait and retry.",
        );
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(retry_after.max(1)),
        );
        return response;
    }
    match webauthn::start_passwordless(state.webauthn_ceremony()).await {
        Ok(started) => options_response(&state, started),
        Err(error) => options_error(error),
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
    let token = ceremony_token(&req, &state);
    match webauthn::finish_passwordless(state.webauthn_ceremony(), &token, &form.credential, origin.0.ip.clone()).await
    {
        Ok((user, used)) => {
            let previous = session_cookie(&req, &state);
            let (session_token, _) = session::start(&state, &user, &used.amr(), origin.0, previous).await?;
            tracing::info!(user_id = %user.id, "signed in with a passkey");
            let mut response = signed_in_response(&state, &session_token, None, &return_to)?;
            clear_ceremony(&state, &mut response);
            Ok(response)
        }
        Err(error @ (PasskeyError::Db(_) | PasskeyError::Internal(_))) => Err(error.into()),
        Err(error) => {
            let message = match error {
                PasskeyError::CeremonyExpired => "The passkey request expired or was already used. Try again.",
                _ => "That passkey could not be used to sign in. Use your password, or try another passkey.",
            };
            let mut response = page(&LoginPage {
                layout: Layout::anonymous("Sign in").with_webauthn_if(state.webauthn.is_some()),
                expired: false,
                csrf: csrf.pre_session.clone(),
                username: String::new(),
                return_to,
                error: Some(message.to_owned()),
                notice: None,
            })?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            csrf.apply(&state, &mut response);
            clear_ceremony(&state, &mut response);
            Ok(response)
        }
    }
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
    let challenge = match challenge_token(&req, &state) {
        Some(token) => mfa::find_challenge(&state.db, state.clock.now(), &token).await,
        None => Ok(None),
    };
    match challenge {
        Ok(Some(challenge)) => match webauthn::start_second_factor(state.webauthn_ceremony(), &challenge.user_id).await
        {
            Ok(started) => options_response(&state, started),
            Err(error) => options_error(error),
        },
        Ok(None) => problem(
            StatusCode::UNAUTHORIZED,
            "The sign-in has expired: sign in with your password again.",
        ),
        Err(error) => options_error(error.into()),
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
    let Pending { token, challenge, user } = match pending_second_step(&req, &state).await? {
        Ok(pending) => pending,
        Err(redirect) => return Ok(redirect),
    };
    let ceremony = ceremony_token(&req, &state);
    match webauthn::finish_second_factor(
        state.webauthn_ceremony(),
        &user.id,
        &ceremony,
        &form.credential,
        origin.0.ip.clone(),
    )
    .await
    {
        Ok(used) => {
            let mut response =
                complete_second_step(&req, &state, origin, &token, &challenge, &user, Some(used.key_method)).await?;
            clear_ceremony(&state, &mut response);
            Ok(response)
        }
        Err(error @ (PasskeyError::Db(_) | PasskeyError::Internal(_))) => Err(error.into()),
        Err(error) => {
            let message = match error {
                PasskeyError::CeremonyExpired => "The request expired or was already used. Try again.",
                _ => "That security key or passkey could not be verified. Try again or use another one.",
            };
            let mut response = code_page(
                &state,
                &csrf,
                &user,
                Some(message.to_owned()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await?;
            clear_ceremony(&state, &mut response);
            Ok(response)
        }
    }
}

fn new_page(
    state: &AppState,
    auth: &Authenticated,
    csrf: &Csrf,
    name: &str,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let mut response = page(&PasskeyNewPage {
        layout: signed_in_layout(state, "Add a security key or passkey", auth, csrf, NEW_PATH)
            .with_webauthn_if(state.webauthn.is_some()),
        csrf: csrf.token.clone(),
        name: name.to_owned(),
        error,
    })?;
    csrf.apply(state, &mut response);
    Ok(response)
}

/// GET /account/passkeys/new: registration needs a sign-in within 5 minutes.
pub async fn new(state: web::Data<AppState>, SignedIn(auth): SignedIn, csrf: Csrf) -> Result<HttpResponse, PageError> {
    if mfa::require_recent(auth.session.auth_time, state.clock.now()).is_err() {
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
    if mfa::require_recent(auth.session.auth_time, state.clock.now()).is_err() {
        return Ok(reauthenticate(&here));
    }
    let mut response = page(&ConfirmPage {
        layout: signed_in_layout(&state, "Remove a security key", &auth, &csrf, &here),
        csrf: csrf.token.clone(),
        heading: format!("Remove “{}”?", credential.name),
        message: "You will no longer be able to sign in with it.".to_owned(),
        action: here,
        button: "Remove".to_owned(),
    })?;
    csrf.apply(&state, &mut response);
    Ok(response)
}

/// POST /account/passkeys/{id}/delete
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    origin: ClientOrigin,
    path: web::Path<String>,
    form: web::Form<crate::http::handlers::session::CsrfForm>,
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
