//! `jitgate-load`: see the library's documentation, or `jitgate-load --help`.

#![expect(clippy::print_stdout, reason = "the harness prints its report")]

use std::process::ExitCode;

use clap::Parser as _;
use jitgate_load::{Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    let json_output = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) if json_output => match serde_json::to_value(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
