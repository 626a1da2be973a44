//! `oxidp migrate`: building the application state applies pending migrations;
//! this reports the result.

use oxidp::state::AppState;

pub fn run(state: &AppState) -> anyhow::Result<()> {
    println!("database ({}) is up to date", state.db.backend().name());
    Ok(())
}
