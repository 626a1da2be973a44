//! Signing out, including RP-Initiated Logout. A GET with a valid `id_token_hint`
//! issued in the current session (same `sub` and `sid`) signs out at once; anything else asks first, so a
//! link on another site cannot sign anyone out. The confirmation is a CSRF-checked POST.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::authn::session;
use crate::http::cookies;
use crate::http::csrf::{self, Csrf};
use crate::http::error::{PageError, html_error};
use crate::http::extractors::{MaybeSignedIn, session_cookie};
use crate::http::pages::{form_page, page, redirect, signed_in_layout};
use crate::oauth::params::Params;
use crate::oidc::end_session::{self, LogoutRequest};
use crate::state::AppState;
use crate::views::{Layout, LogoutPage, SignedOutPage};

/// Ends the browser session and answers: the verified redirect, or the signed-out page.
async fn sign_out(req: &HttpRequest, state: &AppState, logout: &LogoutRequest) -> Result<HttpResponse, PageError> {
    if let Some(token) = session_cookie(req, state) {
        session::end(state, &token).await?;
    }
    let mut response = match &logout.redirect {
        Some(target) => redirect(target.as_str()),
        None => page(&SignedOutPage {
            layout: Layout::anonymous("Signed out"),
        })?,
    };
    response
        .add_cookie(&cookies::removal(&state.config, cookies::SESSION))
        .map_err(|e| PageError::Internal(e.into()))?;
    Ok(response)
}

async fn parse(state: &AppState, raw: &[u8]) -> Result<LogoutRequest, HttpResponse> {
    let params = Params::parse(raw).map_err(|e| {
        html_error(
            StatusCode::BAD_REQUEST,
            "This sign-out request cannot be completed",
            &e.description(),
        )
    })?;
    end_session::parse(state, &params).await.map_err(|message| {
        html_error(
            StatusCode::BAD_REQUEST,
            "This sign-out request cannot be completed",
            &message,
        )
    })
}

/// Signs out at once when the hint proves the relying party speaks for this
/// session; otherwise shows the confirmation page.
async fn handle(
    req: &HttpRequest,
    state: &AppState,
    logout: LogoutRequest,
    csrf: Csrf,
    current: MaybeSignedIn,
) -> Result<HttpResponse, PageError> {
    let Some(auth) = current.authenticated() else {
        // Nobody to sign out: follow a verified redirect, else say so.
        return sign_out(req, state, &logout).await;
    };
    if logout.hint_names_session(&auth.user.id, &auth.session.id) {
        return sign_out(req, state, &logout).await;
    }
    form_page(
        state,
        &csrf,
        &LogoutPage {
            layout: signed_in_layout(state, "Sign out", auth, &csrf, "/logout"),
            csrf: csrf.token.clone(),
            username: auth.user.username.clone(),
            client_name: logout.client.as_ref().map(|c| c.name.clone()),
            client_id: logout.client_id.clone(),
            post_logout_redirect_uri: logout.post_logout_redirect_uri.clone(),
            logout_state: logout.state.clone(),
        },
    )
}

/// GET /logout (also the OIDC end_session_endpoint).
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    csrf: Csrf,
    current: MaybeSignedIn,
) -> Result<HttpResponse, PageError> {
    let logout = match parse(&state, req.query_string().as_bytes()).await {
        Ok(l) => l,
        Err(response) => return Ok(response),
    };
    handle(&req, &state, logout, csrf, current).await
}

/// POST /logout: our own confirmation form (with a CSRF token), or a relying
/// party posting the RP-Initiated Logout parameters (treated like GET).
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
    csrf: Csrf,
    current: MaybeSignedIn,
) -> Result<HttpResponse, PageError> {
    let params = Params::parse(&body).map_err(|e| PageError::BadRequest(e.description()))?;
    let logout = match parse(&state, &body).await {
        Ok(l) => l,
        Err(response) => return Ok(response),
    };
    match params.get("csrf_token") {
        Some(token) => {
            csrf::verify(&req, &state, token)?;
            sign_out(&req, &state, &logout).await
        }
        None => handle(&req, &state, logout, csrf, current).await,
    }
}
