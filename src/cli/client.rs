//! `oxidp client …`: register, list, show, update and delete OAuth clients and
//! rotate their secrets. Every change is audited with actor `cli`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use oxidp::audit::Actor;
use oxidp::oauth::clients::{self, Client, ClientSpec};
use oxidp::state::AppState;

use super::Page;
use super::output::{Output, table};

#[derive(Args)]
pub struct ClientFields {
    /// Display name shown on the consent page.
    #[arg(long)]
    name: Option<String>,
    /// client_secret_basic (default), client_secret_post, private_key_jwt, or none (public client, PKCE required).
    #[arg(long)]
    auth_method: Option<String>,
    /// Exact redirect URI; repeat for several.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Exact post-logout redirect URI; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Allowed grant type (authorization_code, refresh_token, client_credentials); repeat for several.
    #[arg(long = "grant-type")]
    grant_types: Vec<String>,
    /// Space-separated scopes the client may request.
    #[arg(long)]
    scopes: Option<String>,
    /// Default audience of its access tokens.
    #[arg(long)]
    audience: Option<String>,
    /// Access-token lifetime in seconds.
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Absolute refresh-token lifetime in seconds.
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
    /// ID-token signing algorithm: ES256 (default), RS256 or EdDSA.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// A first-party client: no consent screen.
    #[arg(long, conflicts_with = "require_consent")]
    first_party: bool,
    /// Ask for consent (the default for new clients).
    #[arg(long)]
    require_consent: bool,
    /// Issue refresh tokens even without the offline_access scope.
    #[arg(long)]
    refresh_without_offline_access: Option<bool>,
    /// Require a second factor for every sign-in to this client (true/false).
    #[arg(long)]
    require_mfa: Option<bool>,
    /// One active sign-in per person at this client: tokens from a new sign-in
    /// revoke that person's older grants here (true/false).
    #[arg(long)]
    single_session: Option<bool>,
    /// File with the client's public JWK Set (for private_key_jwt).
    #[arg(long)]
    jwks_file: Option<PathBuf>,
}

impl ClientFields {
    fn into_spec(self) -> anyhow::Result<ClientSpec> {
        let jwks = match &self.jwks_file {
            Some(path) => Some(serde_json::from_str(&std::fs::read_to_string(path)?)?),
            None => None,
        };
        let list = |v: Vec<String>| if v.is_empty() { None } else { Some(v) };
        Ok(ClientSpec {
            id: None,
            name: self.name,
            auth_method: self.auth_method,
            jwks,
            redirect_uris: list(self.redirect_uris),
            post_logout_redirect_uris: list(self.post_logout_redirect_uris),
            grant_types: list(self.grant_types),
            scopes: self.scopes,
            audience: self.audience,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            id_token_alg: self.id_token_alg,
            require_consent: if self.first_party {
                Some(false)
            } else if self.require_consent {
                Some(true)
            } else {
                None
            },
            refresh_without_offline_access: self.refresh_without_offline_access,
            require_mfa: self.require_mfa,
            single_session: self.single_session,
        })
    }
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client. A secret, if any, is printed once and never stored in clear.
    Create {
        /// The client_id (default: random).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        output: Output,
    },
    /// List clients.
    List {
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        output: Output,
    },
    /// Show one client.
    Show {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change a client; options not given stay as they are (list options replace the list).
    Update {
        client_id: String,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a client with its codes, grants and consents.
    Delete {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Issue a new secret; the old one stops working at once. Printed once.
    RotateSecret {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
}

pub async fn run(state: &AppState, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create { id, fields, output } => {
            let mut spec = fields.into_spec()?;
            spec.id = id;
            let created =
                clients::create(&state.db, state.clock.now(), &state.config.tokens, &Actor::cli(), spec).await?;
            print_client(&created.client, created.secret.as_deref(), &output)
        }
        ClientCommand::List { page, output } => {
            let (limit, offset) = page.bounds();
            let all = clients::list(&state.db, limit, offset).await?;
            let views: Vec<_> = all.iter().map(clients::describe).collect();
            output.print(&views, || {
                let rows = all.iter().map(|c| {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.name()).collect();
                    [
                        c.id.to_string(),
                        c.name.clone(),
                        c.auth_method.name().to_owned(),
                        grants.join(","),
                    ]
                });
                table(
                    [("client_id", 34), ("name", 24), ("auth_method", 20), ("grants", 0)],
                    "  ",
                    rows,
                )
            })
        }
        ClientCommand::Show { client_id, output } => {
            print_client(&clients::find(&state.db, &client_id).await?, None, &output)
        }
        ClientCommand::Update {
            client_id,
            fields,
            output,
        } => {
            let updated = clients::update(
                &state.db,
                &state.clients,
                state.clock.now(),
                &Actor::cli(),
                &client_id,
                fields.into_spec()?,
            )
            .await?;
            print_client(&updated.client, updated.secret.as_deref(), &output)
        }
        ClientCommand::Delete { client_id, output } => {
            clients::delete(&state.db, &state.clients, state.clock.now(), &Actor::cli(), &client_id).await?;
            output.print_compact(&serde_json::json!({ "client_id": client_id, "deleted": true }), || {
                format!("client {client_id} deleted")
            })
        }
        ClientCommand::RotateSecret { client_id, output } => {
            let secret =
                clients::rotate_secret(&state.db, &state.clients, state.clock.now(), &Actor::cli(), &client_id).await?;
            output.print_compact(
                &serde_json::json!({ "client_id": client_id, "client_secret": secret }),
                || {
                    format!(
                        "new client secret for {client_id}: {secret}\nShown only this once; the old secret no longer works."
                    )
                },
            )
        }
    }
}

/// A client as `clients::describe` has it, with a new secret (shown only this once).
fn print_client(client: &Client, secret: Option<&str>, output: &Output) -> anyhow::Result<()> {
    let mut view = clients::describe(client);
    if let Some(secret) = secret {
        view["client_secret"] = serde_json::json!(secret);
    }
    output.print(&view, || {
        let mut lines: Vec<String> = view
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                format!(
                    "{key:<28} {}",
                    value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
                )
            })
            .collect();
        if secret.is_some() {
            lines.push("\nThe client secret is shown only this once. Store it now.".to_owned());
        }
        lines.join("\n")
    })
}
