// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

/// The window, and the same binary answers the hidden `runner`, `hardware --probe-devices` and
/// `extract` subcommands, so the engine, the hardware probe and the document index start their
/// child processes from it exactly as they do from the CLI, and `--version`. The window and the command line are siblings over
/// the same library; only this entry point knows both.
fn main() -> std::process::ExitCode {
    if matches!(std::env::args().nth(1).as_deref(), Some("runner" | "hardware" | "extract" | "--version" | "-V")) {
        return airlock::cli::main();
    }
    airlock::desktop::main()
}
