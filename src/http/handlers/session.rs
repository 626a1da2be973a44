//! The session lifecycle: "Stay signed in" (extend), and ending sessions from
//! the account page (one, or all the others).

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::Deserialize;

use crate::authn::session;
use crate::http::csrf::{self, CsrfForm};
use crate::http::error::{PageError, no_store};
use crate::http::extractors::{SignedIn, safe_return_to};
use crate::http::pages::redirect;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ExtendQuery {
    return_to: Option<String>,
}

/// POST /session/extend: JSON `{remaining, warn, extendable}` for the page's script,
/// or back to the page for a plain form post.
pub async fn extend(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    query: web::Query<ExtendQuery>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, form.token())?;
    let timer = session::extend(&state, &auth.session).await?;
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        Ok(HttpResponse::Ok().insert_header(no_store()).json(timer))
    } else {
        Ok(redirect(&safe_return_to(query.return_to.as_deref())))
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    csrf_token: String,
    session: String,
}

/// POST /account/sessions/end: signs out one of the person's sessions.
pub async fn end_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    form: web::Form<EndForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    if !session::end_by_id(&state, &auth.user.id, &form.session).await? {
        return Err(PageError::NotFound);
    }
    tracing::info!(user_id = %auth.user.id, "a session was signed out from the account page");
    if form.session == auth.session.id {
        return Ok(redirect("/login"));
    }
    Ok(redirect("/account?done=session"))
}

/// POST /account/sessions/end-others: signs out everywhere else.
pub async fn end_others(
    req: HttpRequest,
    state: web::Data<AppState>,
    SignedIn(auth): SignedIn,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, form.token())?;
    let ended = session::end_others(&state, &auth.user.id, &auth.session.id).await?;
    tracing::info!(user_id = %auth.user.id, ended, "other sessions signed out");
    Ok(redirect("/account?done=sessions"))
}
