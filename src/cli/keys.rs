//! `oxidp keys …`: list the signing keys with their lifecycle status, rotate them.

use clap::Subcommand;
use oxidp::oidc::keys::{self, KeyStatus, SigningAlg};
use oxidp::state::AppState;
use oxidp::views::format_time;

use super::output::{Output, table};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List signing keys and their state.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Rotate: publish a new key now; it signs after keys.publish_ahead_secs (or at once with --now).
    Rotate {
        /// ES256, RS256 or EdDSA (default: all three).
        #[arg(long)]
        alg: Option<String>,
        /// Start signing with the new key immediately (tokens verified by cached JWKS may fail briefly).
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        output: Output,
    },
}

pub async fn run(state: &AppState, command: KeysCommand) -> anyhow::Result<()> {
    let now = state.clock.now();
    match command {
        KeysCommand::List { output } => {
            let rows = state.db.run(oxidp::db::models::keys::all).await?;
            let views: Vec<serde_json::Value> = rows
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kid": k.kid, "alg": k.alg, "status": KeyStatus::of(k, now).label(),
                        "created_at": k.created_at, "activates_at": k.activates_at,
                        "retires_at": k.retires_at, "expires_at": k.expires_at,
                    })
                })
                .collect();
            output.print(&views, || {
                let rows = rows.iter().map(|k| {
                    [
                        k.kid.clone(),
                        k.alg.clone(),
                        KeyStatus::of(k, now).label().to_owned(),
                        format_time(k.created_at),
                    ]
                });
                table([("kid", 18), ("alg", 6), ("status", 24), ("created", 0)], " ", rows)
            })
        }
        KeysCommand::Rotate {
            alg,
            now: immediately,
            output,
        } => {
            let algs = match alg {
                Some(name) => {
                    vec![SigningAlg::parse(&name).ok_or_else(|| anyhow::anyhow!("--alg: ES256, RS256 or EdDSA"))?]
                }
                None => SigningAlg::ALL.to_vec(),
            };
            let ahead = if immediately {
                0
            } else {
                state.config.keys.publish_ahead_secs
            };
            let mut rotated = Vec::new();
            for alg in algs {
                rotated.push(
                    keys::rotate(
                        &state.db,
                        &state.secrets,
                        alg,
                        now,
                        ahead,
                        state.config.keys.retain_secs,
                    )
                    .await?,
                );
            }
            let views: Vec<serde_json::Value> = rotated
                .iter()
                .map(|row| serde_json::json!({ "kid": row.kid, "alg": row.alg, "activates_at": row.activates_at }))
                .collect();
            output.print_lines(&views, || {
                rotated
                    .iter()
                    .map(|row| {
                        format!(
                            "new {} key {} signs from {}",
                            row.alg,
                            row.kid,
                            format_time(row.activates_at)
                        )
                    })
                    .collect()
            })
        }
    }
}
