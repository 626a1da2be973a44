//! The sign-in page.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::Deserialize;

use crate::authn::{login, risk, session};
use crate::domain::Password;
use crate::http::browser_binding;
use crate::http::cookies;
use crate::http::csrf::{self, Csrf};
use crate::http::error::{PageError, no_store};
use crate::http::extractors::{ClientOrigin, MaybeSignedIn, safe_return_to, session_cookie};
use crate::http::handlers::page;
use crate::state::AppState;
use crate::views::{Layout, LoginPage};

/// The one message for every failed sign-in: unknown user, wrong password and
/// disabled account are indistinguishable.
pub const INVALID_CREDENTIALS: &str = "The username or password is not correct.";

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    expired: Option<String>,
    /// `login`: ask for the password even though a session exists (OIDC `prompt=login`, `max_age`).
    prompt: Option<String>,
    /// Prefills the username (OIDC `login_hint`).
    login_hint: Option<String>,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
    csrf: Csrf,
    current: MaybeSignedIn,
) -> Result<HttpResponse, PageError> {
    let return_to = safe_return_to(query.return_to.as_deref());
    if let Some(foreign) = browser_binding::refuse_foreign_return_to(&req, &state, &return_to).await {
        return Ok(foreign);
    }
    let forced = query.prompt.as_deref() == Some("login");
    if current.authenticated().is_some() && !forced {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, return_to))
            .insert_header(no_store())
            .finish());
    }
    let expired = query.expired.is_some();
    let notice = expired.then(|| "For your security you were signed out after a period of inactivity.".to_owned());
    let mut response = page(&LoginPage {
        layout: Layout::anonymous(if expired { "Session expired" } else { "Sign in" })
            .with_webauthn_if(state.webauthn.is_some()),
        expired,
        csrf: csrf.pre_session.clone(),
        username: query
            .login_hint
            .as_deref()
            .map(|h| h.chars().take(64).collect())
            .unwrap_or_default(),
        return_to,
        error: None,
        notice,
    })?;
    csrf.apply(&state, &mut response);
    Ok(response)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    return_to: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
    csrf: Csrf,
    origin: ClientOrigin,
) -> Result<HttpResponse, PageError> {
    csrf::verify_pre_session(&req, &state, &form.csrf_token)?;
    let form = form.into_inner();
    let return_to = safe_return_to(form.return_to.as_deref());
    if let Some(foreign) = browser_binding::refuse_foreign_return_to(&req, &state, &return_to).await {
        return Ok(foreign);
    }
    let password = Password::new(&form.password);
    let device = req
        .cookie(&cookies::name(&state.config, cookies::DEVICE))
        .and_then(|c| risk::open_device(&state.login_key, c.value()));
    let attempt = login::Attempt {
        username: &form.username,
        password: &password,
        ip: origin.0.ip.clone(),
        user_agent: origin.0.user_agent.clone(),
        device,
    };
    match login::authenticate(&state, attempt).await {
        Ok(login::SignedIn { user, device_id }) => {
            // An enrolled second factor is always asked; the session starts after it.
            if crate::authn::mfa::is_enrolled(&state.db, &user.id).await? {
                let token = crate::authn::mfa::open_challenge(
                    &state.db,
                    state.clock.now(),
                    &user.id,
                    "pwd",
                    Some(device_id),
                    &return_to,
                )
                .await?;
                return Ok(crate::http::handlers::mfa::to_second_step(&state, token));
            }
            let previous = session_cookie(&req, &state);
            let (token, _) = session::start(&state, &user, &["pwd"], origin.0, previous).await?;
            tracing::info!(user_id = %user.id, "signed in");
            signed_in_response(&state, &token, Some(&device_id), &return_to)
        }
        Err(login::LoginError::RateLimited { retry_after }) => Err(PageError::TooManyRequests { retry_after }),
        Err(login::LoginError::InvalidCredentials { wait_secs }) => {
            let mut response = page(&LoginPage {
                layout: Layout::anonymous("Sign in").with_webauthn_if(state.webauthn.is_some()),
                expired: false,
                csrf: csrf.pre_session.clone(),
                username: form.username.chars().take(64).collect(),
                return_to,
                error: Some(match wait_secs {
                    Some(wait) => format!(
                        "{INVALID_CREDENTIALS} Too many attempts: try again in {}.",
                        wait_phrase(wait)
                    ),
                    None => INVALID_CREDENTIALS.to_owned(),
                }),
                notice: None,
            })?;
            csrf.apply(&state, &mut response);
            Ok(response)
        }
        Err(other) => Err(other.into()),
    }
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
pub fn signed_in_response(
    state: &AppState,
    token: &session::SessionToken,
    device_id: Option<&str>,
    return_to: &str,
) -> Result<HttpResponse, PageError> {
    let mut response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, return_to.to_owned()))
        .insert_header(no_store())
        .finish();
    response
        .add_cookie(&cookies::build(
            &state.config,
            cookies::SESSION,
            token.expose().to_owned(),
        ))
        .map_err(|e| PageError::Internal(e.into()))?;
    if let Some(device_id) = device_id {
        let mut device = cookies::build(
            &state.config,
            cookies::DEVICE,
            risk::seal_device(&state.login_key, device_id),
        );
        device.set_max_age(actix_web::cookie::time::Duration::days(
            state.config.login.device_cookie_days,
        ));
        response
            .add_cookie(&device)
            .map_err(|e| PageError::Internal(e.into()))?;
    }
    Ok(response)
}
