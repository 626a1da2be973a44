//! The sign-in page.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::Deserialize;

use crate::authn::{login, session};
use crate::domain::Password;
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
    state: web::Data<AppState>,
    query: web::Query<LoginQuery>,
    csrf: Csrf,
    current: MaybeSignedIn,
) -> Result<HttpResponse, PageError> {
    let return_to = safe_return_to(query.return_to.as_deref());
    let forced = query.prompt.as_deref() == Some("login");
    if current.authenticated().is_some() && !forced {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, return_to))
            .insert_header(no_store())
            .finish());
    }
    let notice = query
        .expired
        .as_ref()
        .map(|_| "Your session has expired. Sign in again to continue where you left off.".to_owned());
    let mut response = page(&LoginPage {
        layout: Layout::anonymous("Sign in"),
        csrf: csrf.token.clone(),
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
    csrf::verify(&req, &state, &form.csrf_token)?;
    let form = form.into_inner();
    let return_to = safe_return_to(form.return_to.as_deref());
    let password = Password::new(&form.password);
    match login::authenticate(&state, &form.username, &password).await {
        Ok(user) => {
            let previous = session_cookie(&req, &state);
            let (token, _) = session::start(&state, &user, &["pwd"], origin.0, previous).await?;
            tracing::info!(user_id = %user.id, "signed in");
            let mut response = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .insert_header(no_store())
                .finish();
            response
                .add_cookie(&cookies::build(
                    &state.config,
                    cookies::SESSION,
                    token.expose().to_owned(),
                ))
                .map_err(|e| PageError::Internal(e.into()))?;
            Ok(response)
        }
        Err(login::LoginError::InvalidCredentials) => {
            let mut response = page(&LoginPage {
                layout: Layout::anonymous("Sign in"),
                csrf: csrf.token.clone(),
                username: form.username.chars().take(64).collect(),
                return_to,
                error: Some(INVALID_CREDENTIALS.to_owned()),
                notice: None,
            })?;
            csrf.apply(&state, &mut response);
            Ok(response)
        }
        Err(other) => Err(other.into()),
    }
}
