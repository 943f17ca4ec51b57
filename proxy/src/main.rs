//! The `warden` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use warden_proxy::cli::migrate::{Direction, MigrateArgs, Outcome};
use warden_proxy::cli::{Cli, Command};
use warden_proxy::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("warden: the configuration is not valid:\n{errors}");
                    return ExitCode::from(2);
                }
            };
            let problems = warden_proxy::server::check(&loaded);
            if !problems.is_empty() {
                eprintln!(
                    "warden: the configuration is not valid:\n{}",
                    problems.join("\n")
                );
                return ExitCode::from(2);
            }
            let log = warden_proxy::logging::init(loaded.log.format, &loaded.log.level);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("warden")
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("warden: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = warden_proxy::server::ServeOptions {
                policy: Box::new(warden_policy::Passthrough),
                log: Some(log),
                stop: None,
            };
            let result = runtime.block_on(warden_proxy::server::serve(&config, loaded, options));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("warden: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys(command) => match warden_proxy::cli::keys::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Audit(command) => match warden_proxy::cli::audit::run(*command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Encrypt(args) => migrate(Direction::Encrypt, args),
        Command::Decrypt(args) => migrate(Direction::Decrypt, args),
        Command::Rekey(args) => migrate(Direction::Rekey, args),
        Command::Config(command) => match warden_proxy::cli::config::run(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("warden: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `warden encrypt | decrypt | rekey`: exit status 0 when the migration is complete, 3 when
/// it stopped early as asked (it resumes when run again), 1 on an error.
fn migrate(direction: Direction, args: MigrateArgs) -> ExitCode {
    match warden_proxy::cli::migrate::run(direction, args) {
        Ok(Outcome::Done { .. }) => ExitCode::SUCCESS,
        Ok(Outcome::Stopped { .. }) => ExitCode::from(3),
        Err(e) => {
            eprintln!("warden {}: {e:#}", direction.command());
            ExitCode::FAILURE
        }
    }
}
