//! OAuth endpoints: /authorize (+ its continuation after sign-in), /consent,
//! /token, /revoke, /introspect. Each parses, calls the protocol module, and maps
//! the result to a redirect, a page or RFC 6749 JSON.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::authn::session::Authenticated;
use crate::authn::signin;
use crate::http::browser_binding::{self, BrowserBinding};
use crate::http::csrf::{self, Csrf};
use crate::http::error::{OAuthJsonError, PageError, html_error, no_store};
use crate::http::extractors::{ClientAuth, MaybeSignedIn, SignedIn};
use crate::http::pages::{self, form_page, redirect, urlencode};
use crate::oauth::authorize::{self, AuthorizationRequest, AuthorizeError, ClientResponse, ResponseMode, Step};
use crate::oauth::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::{introspect, revoke, token};
use crate::state::AppState;
use crate::views::{ConsentPage, FormPostPage, Layout};

/// Answers the client at its verified redirect URI.
fn respond(response: ClientResponse) -> HttpResponse {
    match response.mode {
        ResponseMode::Query => redirect(&response.location()),
        ResponseMode::FormPost => {
            let fields = response
                .params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let page = FormPostPage {
                layout: Layout::anonymous("Returning to the application"),
                action: response.redirect_uri.clone(),
                fields,
            };
            match pages::page(&page) {
                Ok(r) => r,
                Err(e) => actix_web::ResponseError::error_response(&e),
            }
        }
    }
}

fn authorize_failure(error: AuthorizeError) -> HttpResponse {
    match error {
        AuthorizeError::Page(message) => html_error(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be completed",
            &message,
        ),
        AuthorizeError::Redirect(response) => respond(response),
        AuthorizeError::Server(OAuthError::TemporarilyUnavailable) => {
            actix_web::ResponseError::error_response(&PageError::Unavailable("authorize".into()))
        }
        AuthorizeError::Server(_) => html_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "An unexpected error occurred. Please try again.",
        ),
    }
}

fn request_params(req: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    if req.method() == actix_web::http::Method::POST {
        Params::parse(body)
    } else {
        Params::parse(req.query_string().as_bytes())
    }
}

/// GET or POST /authorize.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
    current: MaybeSignedIn,
) -> HttpResponse {
    let params = match request_params(&req, &body) {
        Ok(p) => p,
        Err(e) => {
            return html_error(
                StatusCode::BAD_REQUEST,
                "This sign-in request cannot be completed",
                &e.description(),
            );
        }
    };
    let (mut request, client) = match authorize::parse(&state, &params).await {
        Ok(parsed) => parsed,
        Err(error) => return authorize_failure(error),
    };
    let binding = BrowserBinding::from_request(&req, &state);
    request.browser_hash = Some(binding.hash());
    let expired = matches!(current.0, crate::authn::session::Lookup::Expired(_));
    let mut response = proceed(&state, request, &client, current.authenticated(), None, expired).await;
    binding.apply(&state, &mut response);
    response
}

#[derive(Deserialize)]
pub struct ContinueQuery {
    request: String,
}

/// A pending request, if it exists, has not expired and was started by this browser.
async fn load_pending(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
) -> Result<(AuthorizationRequest, i64, Arc<Client>), HttpResponse> {
    let expired = || {
        html_error(
            StatusCode::BAD_REQUEST,
            "This sign-in request has expired",
            "Too much time passed, or the request was already completed. Return to the application and start again.",
        )
    };
    let (request, created_at) = match authorize::load(state, id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(authorize_failure(AuthorizeError::Server(e))),
    };
    if !browser_binding::started_here(req, state, &request) {
        return Err(browser_binding::foreign_browser());
    }
    match state.clients.get(&state.db, &request.client_id).await {
        Ok(Some(client)) => Ok((request, created_at, client)),
        Ok(None) => Err(expired()),
        Err(e) => Err(authorize_failure(e.into())),
    }
}

/// GET /authorize/continue?request=…: back from the sign-in page.
pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ContinueQuery>,
    current: MaybeSignedIn,
) -> HttpResponse {
    match load_pending(&req, &state, &query.request).await {
        Ok((request, created_at, client)) => {
            let expired = matches!(current.0, crate::authn::session::Lookup::Expired(_));
            proceed(
                &state,
                request,
                &client,
                current.authenticated(),
                Some((query.request.clone(), created_at)),
                expired,
            )
            .await
        }
        Err(response) => response,
    }
}

/// Moves a request on: to sign-in, to consent, or to the client with a code or an error.
async fn proceed(
    state: &AppState,
    mut request: AuthorizationRequest,
    client: &Client,
    session: Option<&Authenticated>,
    stored: Option<(String, i64)>,
    session_expired: bool,
) -> HttpResponse {
    if stored.is_none() {
        request.session_at_request = session.map(|s| s.session.id.clone());
    }
    let stored_at = stored.as_ref().map(|(_, created_at)| *created_at);
    let step = match authorize::decide(state, &request, client, session, stored_at).await {
        Ok(step) => step,
        Err(e) => return authorize_failure(AuthorizeError::Server(e)),
    };
    let stored_id = |stored: Option<(String, i64)>| async {
        match stored {
            Some((id, _)) => Ok(id),
            None => authorize::store(state, &request).await.map(|(id, _)| id),
        }
    };
    match step {
        Step::Login { force } => match stored_id(stored).await {
            Ok(id) => {
                let return_to = format!("/authorize/continue?request={id}");
                let mut location = format!("/login?return_to={}", urlencode(&return_to));
                if force {
                    location.push_str("&prompt=login");
                }
                if session_expired {
                    location.push_str("&expired=1");
                }
                if let Some(hint) = &request.login_hint {
                    location.push_str(&format!("&login_hint={}", urlencode(hint)));
                }
                redirect(&location)
            }
            Err(e) => authorize_failure(AuthorizeError::Server(e)),
        },
        Step::Consent => match stored_id(stored).await {
            Ok(id) => redirect(&format!("/consent?request={id}")),
            Err(e) => authorize_failure(AuthorizeError::Server(e)),
        },
        Step::StepUp => {
            let auth = session.expect("StepUp only with a session");
            match stored_id(stored).await {
                Ok(id) => {
                    let return_to = format!("/authorize/continue?request={id}");
                    match signin::step_up(state, auth, &return_to).await {
                        Ok(challenge) => pages::to_second_step(state, challenge),
                        Err(e) => actix_web::ResponseError::error_response(&PageError::from(e)),
                    }
                }
                Err(e) => authorize_failure(AuthorizeError::Server(e)),
            }
        }
        Step::Issue => {
            let auth = session.expect("Issue only with a session");
            match authorize::issue_code(state, &request, auth, stored.map(|(id, _)| id)).await {
                Ok(response) => respond(response),
                Err(error) => authorize_failure(error),
            }
        }
        Step::Fail(error) => {
            if let Some((id, _)) = stored {
                let _ = authorize::discard(state, &id).await;
            }
            respond(authorize::error_response(state, &request, &error))
        }
    }
}

/// GET /consent?request=…
pub async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ContinueQuery>,
    SignedIn(auth): SignedIn,
    csrf: Csrf,
) -> Result<HttpResponse, PageError> {
    let (request, _, client) = match load_pending(&req, &state, &query.request).await {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    form_page(
        &state,
        &csrf,
        &ConsentPage {
            layout: pages::signed_in_layout(
                &state,
                "Allow access",
                &auth,
                &csrf,
                &format!("/consent?request={}", query.request),
            ),
            csrf: csrf.token.clone(),
            username: auth.user.username.clone(),
            client_name: client.name.clone(),
            request_id: query.request.clone(),
            scopes: request.scope.iter().map(authorize::describe_scope).collect(),
        },
    )
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
}

/// POST /consent: allow or deny.
pub async fn consent_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
    SignedIn(auth): SignedIn,
) -> Result<HttpResponse, PageError> {
    csrf::verify(&req, &state, &form.csrf_token)?;
    let (request, created_at, client) = match load_pending(&req, &state, &form.request).await {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match form.decision.as_str() {
        "allow" => {
            let request = match authorize::record_consent(&state, &form.request, request, &auth).await {
                Ok(updated) => updated,
                Err(e) => return Ok(authorize_failure(AuthorizeError::Server(e))),
            };
            tracing::info!(user_id = %auth.user.id, client_id = %client.id, scope = %request.scope, "consent granted");
            Ok(proceed(
                &state,
                request,
                &client,
                Some(&auth),
                Some((form.request.clone(), created_at)),
                false,
            )
            .await)
        }
        "deny" => {
            let _ = authorize::discard(&state, &form.request).await;
            tracing::info!(user_id = %auth.user.id, client_id = %client.id, "consent denied");
            Ok(respond(authorize::error_response(
                &state,
                &request,
                &OAuthError::AccessDenied("the user denied the request"),
            )))
        }
        _ => Err(PageError::BadRequest("Choose Allow or Deny.".into())),
    }
}

fn json_no_store(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(no_store())
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

/// POST /token.
pub async fn token(state: web::Data<AppState>, auth: ClientAuth) -> Result<HttpResponse, OAuthJsonError> {
    let request = token::TokenRequest::try_from(&auth.params)?;
    let response = token::exchange(&state, auth.client, request).await?;
    Ok(json_no_store(response))
}

/// POST /revoke (RFC 7009).
pub async fn revoke(state: web::Data<AppState>, auth: ClientAuth) -> Result<HttpResponse, OAuthJsonError> {
    revoke::revoke(&state, &auth.client, &auth.params).await?;
    Ok(HttpResponse::Ok().insert_header(no_store()).finish())
}

/// POST /introspect (RFC 7662): confidential clients only.
pub async fn introspect(state: web::Data<AppState>, auth: ClientAuth) -> Result<HttpResponse, OAuthJsonError> {
    if auth.client.is_public() {
        return Err(OAuthError::InvalidClient("introspection requires client authentication").into());
    }
    let body = introspect::introspect(&state, &auth.client, &auth.params).await?;
    Ok(json_no_store(body))
}
