//! Two-step verification pages: the second step of sign-in (and of a step-up),
//! setting up an authenticator app, recovery codes, turning it off. Changes to
//! the second factor need a sign-in within the last 5 minutes; otherwise the
//! person signs in again and comes back to the same confirmation page.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::authn::mfa::{self, MfaError};
use crate::authn::session::Authenticated;
use crate::authn::signin::{self, Pending};
use crate::http::csrf::{self, Csrf, CsrfForm};
use crate::http::error::PageError;
use crate::http::extractors::{ClientOrigin, SignedIn, session_cookie};
use crate::http::pages::{
    self, form_page, page, pending_second_step, reauthenticate, redirect, second_step_page, signed_in_layout,
    wait_phrase,
};
use crate::state::AppState;
use crate::views::{ConfirmPage, MfaEnrolPage, RecoveryCodesPage};

/// GET /login/mfa
pub async fn show(req: HttpRequest, state: web::Data<AppState>, csrf: Csrf) -> Result<HttpResponse, PageError> {
    match pending_second_step(&req, &state).await? {
        Ok(Pending { user, .. }) => second_step_page(&state, &csrf, &user, None, StatusCode::OK).await,
        Err(redirect) => Ok(redirect),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf_token: String,
    code: String,
}

/// POST /login/mfa: the second factor; on success a new session (new id) with
/// `amr` including `mfa`, and back to where the sign-in started.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: Csrf,
    origin: ClientOrigin,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    let pending = match pending_second_step(&req, &state).await? {
        Ok(pending) => pending,
        Err(redirect) => return Ok(redirect),
    };
    let previous = session_cookie(&req, &state);
    let (message, status) = match signin::second_step_with_code(&state, &pending, &form.code, origin.0, previous).await
    {
        Ok(session) => return pages::second_step_passed(&state, &session),
        Err(MfaError::TooManyAttempts { wait_secs }) => {
            let message = format!("Too many wrong codes. Wait {} and try again.", wait_phrase(wait_secs));
            let mut response = second_step_page(
                &state,
                &csrf,
                &pending.user,
                Some(message),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await?;
            crate::http_common::set_retry_after(&mut response, wait_secs.max(1) as u64);
            return Ok(response);
        }
        Err(MfaError::Locked) => (
            "Too many wrong codes: codes from your authenticator app are locked for this account. \
             Use a recovery code or a security key, or ask an administrator to unlock it.",
            StatusCode::FORBIDDEN,
        ),
        Err(MfaError::InvalidCode) => (
            "That code is not correct. Check your authenticator app and try again.",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => return Err(other.into()),
    };
    second_step_page(&state, &csrf, &pending.user, Some(message.to_owned()), status).await
}

/// GET /account/mfa/totp: start setting up an authenticator app.
pub async fn enrol(
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
) -> Result<HttpResponse, PageError> {
    let enrolment =
        match mfa::start_enrolment(&state.db, &state.secrets, &state.config, state.clock.now(), &auth.user).await {
            Ok(e) => e,
            Err(MfaError::AlreadyEnrolled) => return Ok(redirect("/account")),
            Err(other) => return Err(other.into()),
        };
    enrol_page(&state, &auth, &csrf, enrolment, None)
}

fn enrol_page(
    state: &AppState,
    auth: &Authenticated,
    csrf: &Csrf,
    enrolment: mfa::Enrolment,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    form_page(
        state,
        csrf,
        &MfaEnrolPage {
            layout: signed_in_layout(state, "Set up two-step verification", auth, csrf, "/account/mfa/totp"),
            csrf: csrf.token.clone(),
            qr_svg: enrolment.qr_svg,
            secret: enrolment.secret,
            error,
        },
    )
}

/// POST /account/mfa/totp: the first code confirms the app; recovery codes follow.
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    match mfa::confirm_enrolment(
        &state.db,
        &state.secrets,
        &state.config,
        state.clock.now(),
        &auth.user,
        &form.code,
    )
    .await
    {
        Ok(codes) => page(&RecoveryCodesPage {
            layout: signed_in_layout(&state, "Recovery codes", &auth, &csrf, "/account"),
            codes,
        }),
        Err(error @ (MfaError::InvalidCode | MfaError::TooManyAttempts { .. })) => {
            let enrolment = mfa::pending_enrolment(&state.db, &state.secrets, &state.config, &auth.user).await?;
            let message = match error {
                MfaError::TooManyAttempts { wait_secs } => {
                    format!("Too many wrong codes. Wait {} and try again.", wait_phrase(wait_secs))
                }
                _ => "That code is not correct. Check the time on your phone and try the current code.".to_owned(),
            };
            let mut response = enrol_page(&state, &auth, &csrf, enrolment, Some(message))?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(MfaError::NotEnrolling) => Ok(redirect("/account/mfa/totp")),
        Err(other) => Err(other.into()),
    }
}

struct Sensitive {
    path: &'static str,
    heading: &'static str,
    message: &'static str,
    /// Said instead of `message` when the person has security keys or passkeys.
    message_with_keys: Option<&'static str>,
    button: &'static str,
}

const REGENERATE: Sensitive = Sensitive {
    path: "/account/mfa/recovery",
    heading: "New recovery codes",
    message: "Your current recovery codes will stop working and ten new ones will be shown once.",
    message_with_keys: None,
    button: "Generate new codes",
};

const DISABLE: Sensitive = Sensitive {
    path: "/account/mfa/disable",
    heading: "Turn off two-step verification?",
    message: "Signing in will then only need your password, and your authenticator app and recovery codes stop working.",
    // Registered security keys stay a second step: say so rather than promise password-only.
    message_with_keys: Some(
        "Your authenticator app and recovery codes stop working. Signing in will still ask for one of your \
         security keys or passkeys.",
    ),
    button: "Turn it off",
};

async fn confirm_page(
    state: &AppState,
    auth: &Authenticated,
    csrf: &Csrf,
    what: &Sensitive,
) -> Result<HttpResponse, PageError> {
    if auth.require_recent(state.clock.now()).is_err() {
        return Ok(reauthenticate(what.path));
    }
    let message = match what.message_with_keys {
        Some(with_keys) if mfa::factors(&state.db, &auth.user.id).await?.webauthn > 0 => with_keys,
        _ => what.message,
    };
    form_page(
        state,
        csrf,
        &ConfirmPage {
            layout: signed_in_layout(state, what.heading, auth, csrf, what.path),
            csrf: csrf.token.clone(),
            heading: what.heading.to_owned(),
            message: message.to_owned(),
            action: what.path.to_owned(),
            button: what.button.to_owned(),
        },
    )
}

/// GET /account/mfa/recovery
pub async fn recovery_confirm(
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
) -> Result<HttpResponse, PageError> {
    confirm_page(&state, &auth, &csrf, &REGENERATE).await
}

/// POST /account/mfa/recovery
pub async fn recovery_regenerate(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, form.token())?;
    match mfa::regenerate_codes(&state.db, state.clock.now(), &auth.user.id, auth.session.auth_time).await {
        Ok(codes) => page(&RecoveryCodesPage {
            layout: signed_in_layout(&state, "Recovery codes", &auth, &csrf, "/account"),
            codes,
        }),
        Err(MfaError::ReauthenticationRequired) => Ok(reauthenticate(REGENERATE.path)),
        Err(MfaError::NotEnrolling) => Ok(redirect("/account")),
        Err(other) => Err(other.into()),
    }
}

/// GET /account/mfa/disable
pub async fn disable_confirm(
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
) -> Result<HttpResponse, PageError> {
    confirm_page(&state, &auth, &csrf, &DISABLE).await
}

/// POST /account/mfa/disable
pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, form.token())?;
    match mfa::disable(
        &state.db,
        state.clock.now(),
        &auth.user.id,
        &auth.session.id,
        auth.session.auth_time,
    )
    .await
    {
        Ok(()) => Ok(redirect("/account?done=mfa-off")),
        Err(MfaError::ReauthenticationRequired) => Ok(reauthenticate(DISABLE.path)),
        Err(other) => Err(other.into()),
    }
}
