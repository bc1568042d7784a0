//! `smsctl`: everything lives in the library (`smsgate_cli`), so tests and docs use it too.

fn main() -> std::process::ExitCode {
    smsgate_cli::main()
}
