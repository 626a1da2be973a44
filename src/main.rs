//! The `oxidp` binary: parses the command line, loads the configuration, starts
//! telemetry and runs the command (see `cli`).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use oxidp::config::Config;

fn main() -> ExitCode {
    oxidp::heap::limit_arenas();
    let cli = cli::Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("oxidp: {error}");
            return ExitCode::from(2);
        }
    };
    oxidp::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("oxidp: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oxidp: {error:#}");
            ExitCode::FAILURE
        }
    }
}
