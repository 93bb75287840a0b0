//! `cargo run -p testenv --example lbt -- up [--dsr] | down`: the test network by hand.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => testenv::up(&testenv::UpOptions {
            dsr: args.iter().any(|a| a == "--dsr"),
            l3: args.iter().any(|a| a == "--l3"),
        }),
        Some("down") => testenv::down(),
        _ => anyhow::bail!("usage: lbt up [--dsr] | down"),
    }
}
