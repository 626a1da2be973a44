//! `oxidp audit`: query the audit log (sign-ins, lockouts, admin changes, …).

use clap::Args;
use oxidp::db::models::audit::AuditFilter;
use oxidp::state::AppState;

use super::output::Output;

#[derive(Args)]
pub struct AuditArgs {
    /// Only events by this actor (`user:<sub>`, `client:<id>`, `cli`, `system`, `anonymous`).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (e.g. login.failure, login.lockout, role.assign, user.create).
    #[arg(long)]
    action: Option<String>,
    /// Only events about this target (e.g. `user:<sub>`, `client:<id>`, a role name).
    #[arg(long)]
    target: Option<String>,
    /// Only events at or after this Unix time.
    #[arg(long)]
    since: Option<i64>,
    /// Only events before this Unix time.
    #[arg(long)]
    until: Option<i64>,
    /// At most this many events, newest first (1-500).
    #[arg(long, default_value_t = 50)]
    limit: i64,
    #[command(flatten)]
    output: Output,
}

pub async fn run(state: &AppState, args: AuditArgs) -> anyhow::Result<()> {
    if !(1..=500).contains(&args.limit) {
        anyhow::bail!("--limit must be between 1 and 500");
    }
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        target: args.target,
        since: args.since,
        until: args.until,
        before: None,
    };
    let events = oxidp::audit::query(&state.db, filter, args.limit).await?;
    let values: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
                "details": serde_json::from_str::<serde_json::Value>(&e.details).unwrap_or_default(),
                "ip": e.ip,
            })
        })
        .collect();
    args.output.print_lines(&values, || {
        events
            .iter()
            .map(|e| {
                format!(
                    "{}  {:<22} {:<40} {:<40} {} {}",
                    oxidp::views::format_time(e.at),
                    e.action,
                    e.actor,
                    e.target.as_deref().unwrap_or("-"),
                    e.ip.as_deref().unwrap_or("-"),
                    e.details
                )
            })
            .collect()
    })
}
