//! The `limitree` binary: everything lives in [`limitree_server::cli`] so it can
//! be read (and tested) as a library.

fn main() -> std::process::ExitCode {
    limitree_server::cli::main()
}
