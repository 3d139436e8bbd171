//! The `jitgate` binary; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    jitgate::cli::main()
}
