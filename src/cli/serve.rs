//! `oxidp serve` (the default): run the identity provider until stopped, creating
//! the first administrator on an empty database.

use std::sync::Arc;

use oxidp::clock::SystemClock;
use oxidp::config::Config;
use oxidp::startup::Application;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let issuer = config.issuer();
    let bind = config.bind.clone();
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    match oxidp::admin::bootstrap(&app.state()).await {
        Ok(Some(admin)) => announce_admin(&admin, &issuer),
        Ok(None) => {}
        Err(error) => anyhow::bail!("creating the first administrator: {error}"),
    }
    match oxidp::accounts::legacy::recompute(&app.state()).await {
        Ok(stats) if stats.bare > 0 => tracing::warn!(
            bare = stats.bare,
            "accounts with a bare (unwrapped) legacy password hash remain: run `oxidp user rewrap-legacy`"
        ),
        Ok(stats) if stats.accounts > 0 => tracing::info!(
            legacy_accounts = stats.accounts,
            "accounts still on a wrapped legacy password hash; each moves to argon2id at its next sign-in"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "counting legacy password hashes failed"),
    }
    let signals = oxidp::shutdown::Signals::watch();
    tracing::info!(%issuer, %bind, port = app.port(), metrics_port = app.metrics_port(), "oxidp is listening");
    app.run_until_signalled(signals).await?;
    tracing::info!("oxidp stopped");
    Ok(())
}

/// The one time the generated administrator password is shown: a single log event
/// (the "printed once to the log"; it is never stored or logged again).
fn announce_admin(admin: &oxidp::admin::Bootstrapped, issuer: &str) {
    match &admin.generated_password {
        Some(password) => tracing::warn!(
            username = %admin.username,
            initial_password = %password,
            sign_in = %format!("{issuer}/login"),
            "FIRST START: created the administrator with the `admin` role; this password is shown only once, change it after signing in"
        ),
        None => tracing::warn!(
            username = %admin.username,
            "FIRST START: created the administrator with the password from admin.initial_password"
        ),
    }
}
