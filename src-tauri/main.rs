fn main() -> std::process::ExitCode {
    airlock::cli::main()
}
