//! Runs the vendored flatc with the given arguments (see Cargo.toml for why it exists).

fn main() {
    let status = std::process::Command::new(flatc_fork::flatc())
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("skein-flatc: cannot run {}: {e}", flatc_fork::flatc().display());
            std::process::exit(1);
        }
    }
}
