//! `cargo run -p testenv --example lbt -- up [--dsr] [--l3] [--cluster] | down`: the test
//! network by hand. `--cluster` builds the fleet network instead (testenv `cluster.rs`).
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    match args.first().map(String::as_str) {
        Some("up") if flag("--cluster") => testenv::cluster::up(&testenv::lb_binary()),
        Some("up") => testenv::up(&testenv::UpOptions { dsr: flag("--dsr"), l3: flag("--l3") }),
        Some("down") => testenv::down(),
        _ => anyhow::bail!("usage: lbt up [--dsr] [--l3] [--cluster] | down"),
    }
}
