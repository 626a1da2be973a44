//! The sign-in page: the password step. What follows it (a second step or a
//! session) is `authn::signin`'s decision.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::authn::signin::{self, AfterPassword};
use crate::authn::{login, risk};
use crate::domain::Password;
use crate::http::browser_binding;
use crate::http::cookies;
use crate::http::csrf::{self, Csrf};
use crate::http::error::PageError;
use crate::http::extractors::{ClientOrigin, MaybeSignedIn, safe_return_to, session_cookie};
use crate::http::pages::{self, wait_phrase};
use crate::state::AppState;

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
        return Ok(pages::redirect(&return_to));
    }
    let hint = query.login_hint.as_deref().unwrap_or_default();
    pages::sign_in_page(&state, &csrf, hint, return_to, None, query.expired.is_some())
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
        Ok(passed) => {
            let previous = session_cookie(&req, &state);
            match signin::after_password(&state, passed, &return_to, origin.0, previous).await? {
                AfterPassword::SecondStep { challenge } => Ok(pages::to_second_step(&state, challenge)),
                AfterPassword::SignedIn(session) => pages::signed_in(&state, &session),
            }
        }
        Err(login::LoginError::InvalidCredentials { wait_secs }) => {
            let error = match wait_secs {
                Some(wait) => format!(
                    "{INVALID_CREDENTIALS} Too many attempts: try again in {}.",
                    wait_phrase(wait)
                ),
                None => INVALID_CREDENTIALS.to_owned(),
            };
            pages::sign_in_page(&state, &csrf, &form.username, return_to, Some(error), false)
        }
        Err(login::LoginError::RateLimited { retry_after }) => Err(PageError::TooManyRequests { retry_after }),
        Err(login::LoginError::Db(db)) => Err(db.into()),
    }
}
