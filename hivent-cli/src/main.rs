//! The standalone `hivent` binary (its commands arrive with the CLI issue).

fn main() {
    eprintln!("hivent: the command-line tool is not built yet; use the library (see README.md)");
    std::process::exit(2);
}
