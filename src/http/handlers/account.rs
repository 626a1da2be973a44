//! The account page: profile, password change, sessions.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::accounts::{self, AccountError};
use crate::audit::Actor;
use crate::authn::session::Authenticated;
use crate::domain::Password;
use crate::http::csrf::{self, Csrf};
use crate::http::error::PageError;
use crate::http::extractors::SignedIn;
use crate::http::pages::{form_page, redirect, signed_in_layout};
use crate::state::AppState;
use crate::views::{AccountPage, AccountView, ConsentView, SessionView, SignInView};

#[derive(Deserialize)]
pub struct AccountQuery {
    done: Option<String>,
}

async fn render(
    state: &AppState,
    auth: &Authenticated,
    csrf: &Csrf,
    message: Option<String>,
    password_error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let activity = accounts::activity(state, &auth.user.id).await?;
    let (mfa_enabled, recovery_remaining) = crate::authn::mfa::status(&state.db, &auth.user.id).await?;
    let second_step_failures = crate::authn::mfa::failures_since_last_sign_in(&state.db, &auth.user.id).await?;
    let passkeys = crate::authn::webauthn::list(&state.db, &auth.user.id)
        .await?
        .iter()
        .map(crate::views::PasskeyView::new)
        .collect();
    form_page(
        state,
        csrf,
        &AccountPage {
            layout: signed_in_layout(state, "Your account", auth, csrf, "/account"),
            csrf: csrf.token.clone(),
            user: AccountView::from(&auth.user),
            sessions: activity
                .sessions
                .iter()
                .map(|row| SessionView::new(row, &auth.session.id))
                .collect(),
            sign_ins: activity.sign_ins.iter().map(SignInView::new).collect(),
            mfa_enabled,
            recovery_remaining,
            second_step_failures,
            passkeys,
            consents: activity
                .consents
                .into_iter()
                .map(|(row, client_name)| ConsentView {
                    client_id: row.client_id,
                    client_name,
                    scope: row.scope,
                    since: crate::views::format_time(row.created_at),
                })
                .collect(),
            message,
            password_error,
        },
    )
}

pub async fn show(
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    query: web::Query<AccountQuery>,
) -> Result<HttpResponse, PageError> {
    let message = match query.done.as_deref() {
        Some("password") => Some("Your password has been changed.".to_owned()),
        Some("consent") => Some("The application can no longer access your account.".to_owned()),
        Some("session") => Some("That session has been signed out.".to_owned()),
        Some("sessions") => Some("You have been signed out everywhere else.".to_owned()),
        Some("mfa-off") => Some("Two-step verification is off.".to_owned()),
        Some("passkey-added") => Some("Your security key or passkey has been added.".to_owned()),
        Some("passkey-renamed") => Some("The name has been changed.".to_owned()),
        Some("passkey-removed") => Some("The security key or passkey has been removed.".to_owned()),
        _ => None,
    };
    render(&state, &auth, &csrf, message, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf_token: String,
    current_password: String,
    new_password: String,
    confirm_password: String,
}

pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    if form.new_password != form.confirm_password {
        let error = "The two new passwords do not match.".to_owned();
        return render(&state, &auth, &csrf, None, Some(error)).await.map(unprocessable);
    }
    let current = Password::new(&form.current_password);
    let new = Password::new(&form.new_password);
    let actor = Actor::user(
        &auth.user.id,
        crate::http::extractors::client_ip(&req).map(|ip| ip.to_string()),
    );
    match accounts::change_password(&state, &actor, &auth.user, &auth.session.id, &current, &new).await {
        Ok(()) => {
            tracing::info!(user_id = %auth.user.id, "password changed");
            Ok(redirect("/account?done=password"))
        }
        Err(error @ (AccountError::Policy(_) | AccountError::WrongPassword)) => {
            render(&state, &auth, &csrf, None, Some(error.to_string()))
                .await
                .map(unprocessable)
        }
        Err(other) => Err(other.into()),
    }
}

fn unprocessable(mut response: HttpResponse) -> HttpResponse {
    *response.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    response
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    csrf_token: String,
    client_id: String,
}

/// POST /account/consents/revoke: withdraw consent and revoke the client's tokens.
pub async fn withdraw_consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    form: web::Form<WithdrawForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    crate::oauth::authorize::withdraw_consent(&state, &auth.user.id, &form.client_id)
        .await
        .map_err(|e| match e {
            crate::oauth::error::OAuthError::TemporarilyUnavailable => PageError::Unavailable("consent".into()),
            other => PageError::Internal(anyhow::anyhow!(other)),
        })?;
    tracing::info!(user_id = %auth.user.id, client_id = %form.client_id, "consent withdrawn");
    Ok(redirect("/account?done=consent"))
}
