//! Thin entry point: parse the command line, initialise logging, run the command, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use imagestream_ingest::cli::{self, Cli};
use imagestream_ingest::telemetry;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imagestream-ingest: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imagestream-ingest: {e}");
            e.exit_code()
        }
    }
}
