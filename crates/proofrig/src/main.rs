//! The `proofrig` command line: the edge where typed errors become reports and exit codes.

use std::process::ExitCode;

use proofrig::cli;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_tracing(args.verbose);
    // Unwrapped lines: a located error stays one greppable line in logs and CI output.
    let _ = miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let outcome = runtime.block_on(cli::run(args));
    // A console session may leave a thread blocked on stdin; do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("{:?}", failure.report);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,proofrig_labhost=info",
        1 => "info,proofrig=debug,proofrig_agents=debug",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PROOFRIG_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init();
}
