//! `oxidp user …`: create, list, show, disable, enable, unlock and import users,
//! and set their passwords. Every change is audited with actor `cli`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use oxidp::accounts::{self, Credential, NewAccount, Profile};
use oxidp::audit::Actor;
use oxidp::db::models::users::UserRow;
use oxidp::domain::Password;
use oxidp::state::AppState;

use super::Page;
use super::output::{Output, table};

#[derive(Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is prompted for, or read with --password-stdin.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// Mark the e-mail address as verified.
        #[arg(long)]
        email_verified: bool,
        /// Full name (OIDC `name`).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        family_name: Option<String>,
        #[arg(long)]
        locale: Option<String>,
        /// Create the user without a password (it cannot sign in with one until set).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        output: Output,
    },
    /// List users.
    List {
        #[command(flatten)]
        page: Page,
        /// Only accounts still carrying an imported legacy hash (wrapped or bare); prints their count.
        #[arg(long)]
        legacy: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Show one user, by id or username.
    Show {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Disable a user: sign-in is refused and their sessions end.
    Disable {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Enable a disabled user.
    Enable {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Lift a sign-in lockout or delay (after too many failed sign-ins).
    Unlock {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Set a user's password (policy and history apply; also lifts a lockout).
    SetPassword {
        user: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        output: Output,
    },
    /// Import users from a JSON Lines file (`-` for standard input). Each line:
    /// {"username": "...", "email": "...", "password_hash": "$2b$..." | "$pbkdf2-sha256$..." | "pbkdf2_sha256$..."}.
    /// Legacy hashes are replaced by argon2id at the user's next sign-in.
    Import {
        file: PathBuf,
        /// Import legacy hashes below the floor (bcrypt cost < 10, PBKDF2 < 100,000 iterations).
        #[arg(long)]
        allow_weak_legacy: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Wrap legacy hashes imported before wrapping existed in argon2id (one-off;
    /// safe to interrupt, re-run, and run while servers are up). Progress on stderr.
    RewrapLegacy {
        #[command(flatten)]
        output: Output,
    },
}

pub async fn run(state: &AppState, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            email,
            email_verified,
            name,
            given_name,
            family_name,
            locale,
            no_password,
            password,
            output,
        } => {
            let credential = if no_password {
                Credential::None
            } else {
                Credential::Password(read_password(&password)?)
            };
            let user = accounts::create(
                state,
                &Actor::cli(),
                NewAccount {
                    username,
                    email,
                    email_verified,
                    profile: Profile {
                        name,
                        given_name,
                        family_name,
                        locale,
                        ..Profile::default()
                    },
                    credential,
                    disabled: false,
                },
            )
            .await?;
            print_user(&user, &output)
        }
        UserCommand::List { page, legacy, output } => {
            let (limit, offset) = page.bounds();
            if !legacy {
                let users = accounts::list(state, limit, offset).await?;
                let views: Vec<_> = users.iter().map(view).collect();
                return output.print(&views, || user_table(&users));
            }
            let stats = accounts::legacy::recompute(state).await?;
            let users = accounts::legacy::list(state, limit, offset).await?;
            if !output.json {
                eprintln!(
                    "{} account(s) still carry a legacy hash ({} not yet wrapped: run `oxidp user rewrap-legacy`)",
                    stats.accounts, stats.bare
                );
            }
            let views: Vec<_> = users.iter().map(view).collect();
            let counted = serde_json::json!({
                "legacy_accounts": stats.accounts,
                "bare": stats.bare,
                "users": views,
            });
            output.print(&counted, || user_table(&users))
        }
        UserCommand::Show { user, output } => print_user(&accounts::find(state, &user).await?, &output),
        UserCommand::Disable { user, output } => {
            let user = accounts::set_disabled(state, &Actor::cli(), &user, true).await?;
            print_user(&user, &output)
        }
        UserCommand::Enable { user, output } => {
            let user = accounts::set_disabled(state, &Actor::cli(), &user, false).await?;
            print_user(&user, &output)
        }
        UserCommand::Unlock { user, output } => {
            let user = accounts::find(state, &user).await?;
            oxidp::authn::login::unlock(state, &Actor::cli(), &user).await?;
            output.print_compact(&serde_json::json!({ "id": user.id, "unlocked": true }), || {
                format!("{} may sign in again", user.username)
            })
        }
        UserCommand::SetPassword { user, password, output } => {
            let user = accounts::find(state, &user).await?;
            let password = read_password(&password)?;
            accounts::set_password(state, &Actor::cli(), &user, &password, None).await?;
            output.print_compact(&serde_json::json!({ "id": user.id, "password_changed": true }), || {
                format!("password changed for {}", user.username)
            })
        }
        UserCommand::Import {
            file,
            allow_weak_legacy,
            output,
        } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            }
            let outcomes = accounts::import(state, &Actor::cli(), &text, allow_weak_legacy).await;
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            let summary = serde_json::json!({
                "imported": outcomes.len() - failed,
                "failed": failed,
                "results": outcomes,
            });
            output.print_lines(&summary, || {
                let mut lines: Vec<String> = outcomes
                    .iter()
                    .map(|outcome| match &outcome.error {
                        None => format!(
                            "line {}: imported {}",
                            outcome.line,
                            outcome.username.as_deref().unwrap_or("")
                        ),
                        Some(error) => format!("line {}: FAILED: {error}", outcome.line),
                    })
                    .collect();
                lines.push(format!("{} imported, {failed} failed", outcomes.len() - failed));
                lines
            })?;
            if failed > 0 {
                anyhow::bail!("{failed} record(s) were not imported");
            }
            Ok(())
        }
        UserCommand::RewrapLegacy { output } => {
            let started = std::time::Instant::now();
            let report = accounts::legacy::rewrap(state, &Actor::cli(), |done, total| {
                eprint!("\rrewrap-legacy: {done}/{total} legacy rows scanned");
            })
            .await;
            eprintln!();
            let report = report?;
            let stats = accounts::legacy::recompute(state).await?;
            let summary = serde_json::json!({ "scanned": report.scanned, "wrapped": report.wrapped,
                "skipped": report.skipped, "legacy_accounts": stats.accounts, "bare": stats.bare });
            output.print_compact(&summary, || {
                format!(
                    "{} legacy hash(es) wrapped in argon2id ({} changed meanwhile, left alone) in {:.1} s; \
                     {} account(s) still on a legacy hash, {} bare",
                    report.wrapped,
                    report.skipped,
                    started.elapsed().as_secs_f64(),
                    stats.accounts,
                    stats.bare
                )
            })
        }
    }
}

/// The password from standard input (`--password-stdin`), or prompted for twice
/// on a terminal. Never from the command line.
fn read_password(source: &PasswordSource) -> anyhow::Result<Password> {
    if source.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        return Ok(Password::new(line));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no password given: use --password-stdin, or run in a terminal to be prompted");
    }
    let first = rpassword::prompt_password("New password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(Password::new(&first))
}

/// A user as `--json` shows it: the stored row (the hash itself is skipped by
/// `UserRow`'s serialization) and the name of its password scheme.
#[derive(serde::Serialize)]
struct UserView<'a> {
    #[serde(flatten)]
    user: &'a UserRow,
    password_scheme: Option<&'static str>,
}

fn view(user: &UserRow) -> UserView<'_> {
    UserView {
        user,
        password_scheme: user.password_hash.as_deref().map(oxidp::authn::password::scheme_of),
    }
}

fn user_table(users: &[UserRow]) -> String {
    let rows = users.iter().map(|user| {
        [
            user.id.clone(),
            user.username.clone(),
            user.email.clone().unwrap_or_else(|| "-".into()),
            (if user.disabled { "disabled" } else { "active" }).to_owned(),
        ]
    });
    table([("id", 36), ("username", 24), ("email", 32), ("status", 0)], "  ", rows)
}

fn print_user(user: &UserRow, output: &Output) -> anyhow::Result<()> {
    output.print(&view(user), || {
        [
            format!("id:             {}", user.id),
            format!("username:       {}", user.username),
            format!(
                "email:          {}{}",
                user.email.as_deref().unwrap_or("-"),
                if user.email_verified { " (verified)" } else { "" }
            ),
            format!("name:           {}", user.name.as_deref().unwrap_or("-")),
            format!("disabled:       {}", user.disabled),
            format!(
                "password:       {}",
                user.password_hash
                    .as_deref()
                    .map(oxidp::authn::password::scheme_of)
                    .unwrap_or("none")
            ),
            format!("created:        {}", oxidp::views::format_time(user.created_at)),
        ]
        .join("\n")
    })
}
