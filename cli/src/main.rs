//! `agentfs`: wrap a command so its ports become *.localhost URLs.
fn main() {
    println!("agentfs {}", env!("CARGO_PKG_VERSION"));
}
