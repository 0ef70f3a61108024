//! The one `shoal` binary: `shoal up` runs a node; every other verb is a
//! client of any node's API. See `shoal --help`.

fn main() -> std::process::ExitCode {
    shoal::cli::main()
}
