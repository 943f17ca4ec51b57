//! `warden config check FILE`: validates a configuration the way `warden serve` would load it.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file and every file it names (certificates, keys, users files).
    /// Prints each problem with its file and line; exits with status 1 if there is any.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs the command; `Ok(false)` when the configuration has problems (already printed).
pub fn run(command: ConfigCommand) -> anyhow::Result<bool> {
    match command {
        ConfigCommand::Check { file } => {
            let config = match Config::load(&file) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                    eprintln!("{}: {} problem(s) found", file.display(), errors.0.len());
                    return Ok(false);
                }
            };
            let problems = crate::server::check(&config);
            if !config.audit_enabled {
                eprintln!("warning: {}", crate::server::AUDIT_DISABLED_WARNING);
            }
            if problems.is_empty() {
                println!(
                    "{}: configuration is valid ({} upstream(s))",
                    file.display(),
                    config.upstreams.len()
                );
                Ok(true)
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s) found", file.display(), problems.len());
                Ok(false)
            }
        }
    }
}
