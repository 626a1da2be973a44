//! Two-step verification pages: the second step of sign-in (and of a step-up),
//! setting up an authenticator app, recovery codes, turning it off. Changes to
//! the second factor need a sign-in within the last 5 minutes; otherwise the
//! person signs in again and comes back to the same confirmation page.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::Deserialize;

use crate::accounts;
use crate::authn::mfa::{self, MfaError, Proof};
use crate::authn::session::{self, Authenticated};
use crate::http::cookies;
use crate::http::csrf::{self, Csrf};
use crate::http::error::{PageError, no_store, urlencode};
use crate::http::extractors::{ClientOrigin, SignedIn, session_cookie};
use crate::http::handlers::login::signed_in_response;
use crate::http::handlers::page;
use crate::state::AppState;
use crate::views::{ConfirmPage, Layout, MfaCodePage, MfaEnrolPage, RecoveryCodesPage};

pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header(no_store())
        .finish()
}

impl From<MfaError> for PageError {
    fn from(error: MfaError) -> Self {
        match error {
            MfaError::Db(db) => db.into(),
            MfaError::Internal(e) => PageError::Internal(e),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

/// Sends the person to `/login/mfa` with a fresh challenge cookie.
pub fn to_second_step(state: &AppState, token: String) -> HttpResponse {
    let mut response = redirect("/login/mfa");
    let mut cookie = cookies::build(&state.config, cookies::MFA, token);
    cookie.set_max_age(CookieDuration::seconds(mfa::CHALLENGE_TTL_SECS));
    let _ = response.add_cookie(&cookie);
    response
}

pub fn challenge_token(req: &HttpRequest, state: &AppState) -> Option<String> {
    req.cookie(&cookies::name(&state.config, cookies::MFA))
        .map(|c| c.value().to_owned())
}

/// GET /login/mfa
pub async fn show(req: HttpRequest, state: web::Data<AppState>, csrf: Csrf) -> Result<HttpResponse, PageError> {
    let Some(token) = challenge_token(&req, &state) else {
        return Ok(redirect("/login"));
    };
    let Some(challenge) = mfa::find_challenge(&state.db, state.clock.now(), &token).await? else {
        return Ok(redirect("/login?expired=1"));
    };
    let user = accounts::find(&state, &challenge.user_id).await?;
    code_page(&state, &csrf, &user, None, StatusCode::OK).await
}

/// The second-step page: a code field and/or a security key button, by what the person has set up.
pub async fn code_page(
    state: &AppState,
    csrf: &Csrf,
    user: &crate::db::models::users::UserRow,
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

#[derive(Deserialize)]
pub struct CodeForm {
    csrf_token: String,
    code: String,
}

/// This browser's sign-in waiting for its second step.
pub struct Pending {
    pub token: String,
    pub challenge: crate::db::models::mfa::ChallengeRow,
    pub user: crate::db::models::users::UserRow,
}

/// The pending second step, or the redirect to answer instead (none, expired,
/// or the account was disabled meanwhile).
pub async fn pending_second_step(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Result<Pending, HttpResponse>, PageError> {
    let Some(token) = challenge_token(req, state) else {
        return Ok(Err(redirect("/login")));
    };
    let Some(challenge) = mfa::find_challenge(&state.db, state.clock.now(), &token).await? else {
        return Ok(Err(redirect("/login?expired=1")));
    };
    let user = accounts::find(state, &challenge.user_id).await?;
    if user.disabled {
        mfa::close_challenge(&state.db, &token).await?;
        return Ok(Err(redirect("/login")));
    }
    Ok(Ok(Pending { token, challenge, user }))
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
    let Pending { token, challenge, user } = match pending_second_step(&req, &state).await? {
        Ok(pending) => pending,
        Err(redirect) => return Ok(redirect),
    };
    match mfa::verify(
        &state.db,
        &state.secrets,
        &state.config,
        &state.metrics,
        state.clock.now(),
        &user,
        &form.code,
    )
    .await
    {
        Ok(proof) => {
            let method = (proof == Proof::Totp).then_some("otp");
            complete_second_step(&req, &state, origin, &token, &challenge, &user, method).await
        }
        Err(MfaError::TooManyAttempts { wait_secs }) => {
            let message = format!(
                "Too many wrong codes. Wait {} and try again.",
                crate::http::handlers::login::wait_phrase(wait_secs)
            );
            let mut response = code_page(&state, &csrf, &user, Some(message), StatusCode::TOO_MANY_REQUESTS).await?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait_secs.max(1) as u64));
            Ok(response)
        }
        Err(MfaError::Locked) => {
            let message = "Too many wrong codes: codes from your authenticator app are locked for this account. \
                           Use a recovery code or a security key, or ask an administrator to unlock it."
                .to_owned();
            code_page(&state, &csrf, &user, Some(message), StatusCode::FORBIDDEN).await
        }
        Err(MfaError::InvalidCode) => {
            code_page(
                &state,
                &csrf,
                &user,
                Some("That code is not correct. Check your authenticator app and try again.".to_owned()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// The second step passed (`method`: the RFC 8176 value it adds, if any): the
/// pending challenge closes and a new session (new id) starts with `amr`
/// including `mfa`, then back to where the sign-in started.
pub async fn complete_second_step(
    req: &HttpRequest,
    state: &AppState,
    origin: ClientOrigin,
    token: &str,
    challenge: &crate::db::models::mfa::ChallengeRow,
    user: &crate::db::models::users::UserRow,
    method: Option<&str>,
) -> Result<HttpResponse, PageError> {
    mfa::close_challenge(&state.db, token).await?;
    mfa::second_step_passed(&state.db, &user.id).await?;
    let mut amr: Vec<&str> = challenge
        .amr
        .split(' ')
        .filter(|m| !m.is_empty() && *m != "mfa")
        .collect();
    if let Some(method) = method
        && !amr.contains(&method)
    {
        amr.push(method);
    }
    amr.push("mfa");
    let previous = session_cookie(req, state);
    let (session_token, _) = session::start(state, user, &amr, origin.0, previous).await?;
    tracing::info!(user_id = %user.id, "second factor passed");
    let mut response = signed_in_response(
        state,
        &session_token,
        challenge.device_id.as_deref(),
        &challenge.return_to,
    )?;
    let _ = response.add_removal_cookie(&cookies::removal(&state.config, cookies::MFA));
    Ok(response)
}

/// Opens a step-up for a signed-in person (e.g. `acr_values` asks for MFA).
pub async fn step_up(state: &AppState, auth: &Authenticated, return_to: &str) -> Result<HttpResponse, PageError> {
    let token = mfa::open_challenge(
        &state.db,
        state.clock.now(),
        &auth.user.id,
        &auth.session.amr,
        None,
        return_to,
    )
    .await?;
    Ok(to_second_step(state, token))
}

pub fn reauthenticate(return_to: &str) -> HttpResponse {
    redirect(&format!("/login?prompt=login&return_to={}", urlencode(return_to)))
}

pub fn signed_in_layout(state: &AppState, title: &str, auth: &Authenticated, csrf: &Csrf, here: &str) -> Layout {
    Layout::signed_in(title, &auth.user.username, &csrf.token).with_timer(session::timer(state, &auth.session), here)
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
    let mut response = page(&MfaEnrolPage {
        layout: signed_in_layout(
            &state,
            "Set up two-step verification",
            &auth,
            &csrf,
            "/account/mfa/totp",
        ),
        csrf: csrf.token.clone(),
        qr_svg: enrolment.qr_svg,
        secret: enrolment.secret,
        error: None,
    })?;
    csrf.apply(&state, &mut response);
    Ok(response)
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
                MfaError::TooManyAttempts { wait_secs } => format!(
                    "Too many wrong codes. Wait {} and try again.",
                    crate::http::handlers::login::wait_phrase(wait_secs)
                ),
                _ => "That code is not correct. Check the time on your phone and try the current code.".to_owned(),
            };
            let mut response = page(&MfaEnrolPage {
                layout: signed_in_layout(
                    &state,
                    "Set up two-step verification",
                    &auth,
                    &csrf,
                    "/account/mfa/totp",
                ),
                csrf: csrf.token.clone(),
                qr_svg: enrolment.qr_svg,
                secret: enrolment.secret,
                error: Some(message),
            })?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            csrf.apply(&state, &mut response);
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
    if mfa::require_recent(auth.session.auth_time, state.clock.now()).is_err() {
        return Ok(reauthenticate(what.path));
    }
    let message = match what.message_with_keys {
        Some(with_keys) if mfa::factors(&state.db, &auth.user.id).await?.webauthn > 0 => with_keys,
        _ => what.message,
    };
    let mut response = page(&ConfirmPage {
        layout: signed_in_layout(state, what.heading, auth, csrf, what.path),
        csrf: csrf.token.clone(),
        heading: what.heading.to_owned(),
        message: message.to_owned(),
        action: what.path.to_owned(),
        button: what.button.to_owned(),
    })?;
    csrf.apply(state, &mut response);
    Ok(response)
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
    form: web::Form<crate::http::handlers::session::CsrfForm>,
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
    form: web::Form<crate::http::handlers::session::CsrfForm>,
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
