//! RP-Initiated Logout 1.0. `id_token_hint` proves which session the relying party
//! means (its `sub` and `sid` must both name the current session, §2/§4); without
//! it, or with a hint from another session, the person is asked to confirm (so a third-party page cannot
//! sign them out). `post_logout_redirect_uri` is followed only when it exactly
//! matches one the client registered; otherwise the signed-out page is shown.

use std::sync::Arc;

use crate::oauth::clients::Client;
use crate::oauth::params::Params;
use crate::oidc::id_token;
use crate::state::AppState;

impl LogoutRequest {
    /// True when the ID token hint was issued in this very OP session (same
    /// person, same `sid`); an older session's token does not qualify.
    pub fn hint_names_session(&self, user_id: &str, session_id: &str) -> bool {
        self.hint_sub.as_deref() == Some(user_id) && self.hint_sid.as_deref() == Some(session_id)
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogoutRequest {
    /// `sub` of a valid ID token hint.
    pub hint_sub: Option<String>,
    /// `sid` of a valid ID token hint: the OP session it was issued in.
    pub hint_sid: Option<String>,
    pub client: Option<Arc<Client>>,
    /// Verified post-logout redirect, with `state` already appended.
    pub redirect: Option<String>,
    /// The raw parameters to carry through the confirmation form.
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// Parses a logout request; `Err` is a message for an error page.
pub async fn parse(state: &AppState, params: &Params) -> Result<LogoutRequest, String> {
    let hint = match params.get("id_token_hint") {
        Some(token) => Some(
            id_token::verify_hint(state, token)
                .ok_or_else(|| "The sign-out request carries an invalid ID token.".to_owned())?,
        ),
        None => None,
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|(_, aud, _)| (aud.len() == 1).then(|| aud[0].clone()));
    let client_id = match (params.get("client_id"), hinted_client) {
        (Some(given), Some(hinted)) if given != hinted => {
            return Err("The sign-out request names two different applications.".to_owned());
        }
        (Some(given), _) => Some(given.to_owned()),
        (None, hinted) => hinted,
    };
    let client = match &client_id {
        Some(id) => state
            .clients
            .get(&state.db, id)
            .await
            .map_err(|_| "The service is temporarily unavailable.".to_owned())?,
        None => None,
    };
    let client_state = params.get("state").map(|s| s.chars().take(2048).collect::<String>());
    let requested = params.get("post_logout_redirect_uri");
    let redirect = match (requested, &client) {
        (Some(uri), Some(client)) if client.post_logout_redirect_uris.iter().any(|r| r.as_str() == uri) => {
            let mut target = uri.to_owned();
            if let Some(s) = &client_state {
                let query: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", s)
                    .finish();
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(&query);
            }
            Some(target)
        }
        _ => None,
    };
    let (hint_sub, hint_sid) = match hint {
        Some((sub, _, sid)) => (Some(sub), sid),
        None => (None, None),
    };
    Ok(LogoutRequest {
        hint_sub,
        hint_sid,
        client,
        redirect,
        client_id,
        post_logout_redirect_uri: requested.map(str::to_owned),
        state: client_state,
    })
}
