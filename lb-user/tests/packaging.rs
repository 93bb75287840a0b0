//! packaging/ against `lb` itself, without building a package (the package test,
//! `xtask/tests/package_install.rs`, installs one as root): each unit's `ExecStart=` is a
//! command line `lb` accepts, the agent's with its variables filled from the unit's
//! defaults and the example file; the example file names every variable the unit uses and
//! gives the unit's defaults; the shipped config passes `lb check`. No root.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use lb_user::cli::{Cli, Command as LbCommand};

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(packaging(file)).unwrap_or_else(|e| panic!("packaging/{file}: {e}"))
}

/// The values of `key=` lines of a unit (every occurrence).
fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

/// `NAME=value` words, as `Environment=` and an environment file hold them.
fn assignments<'a>(words: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// The unit's ExecStart as argv, with every `${NAME}` replaced from `env`.
fn exec_start(unit: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let lines = directives(unit, "ExecStart");
    assert_eq!(lines.len(), 1, "one ExecStart: {lines:?}");
    lines[0]
        .split_whitespace()
        .map(|word| match word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            Some(name) => env.get(name).unwrap_or_else(|| panic!("${{{name}}} has no value")).clone(),
            None => word.to_string(),
        })
        .collect()
}

fn parse(argv: &[String]) -> Cli {
    assert_eq!(argv[0], "/usr/bin/lb", "{argv:?}");
    let mut args = argv.to_vec();
    args[0] = "lb".to_string();
    Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("lb refuses {argv:?}:\n{e}"))
}

#[test]
fn the_daemons_unit_runs_lb_run_on_the_shipped_config() {
    let unit = read("lb.service");
    let cli = parse(&exec_start(&unit, &BTreeMap::new()));
    match cli.command {
        LbCommand::Run { config, detach_on_exit } => {
            assert_eq!(config, Path::new("/etc/lb/lb.toml"));
            assert!(!detach_on_exit, "a stop must leave XDP forwarding for the next start");
        }
        other => panic!("lb.service runs {other:?}"),
    }
    assert_eq!(directives(&unit, "Type"), ["notify"]);
    assert_eq!(directives(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
}

#[test]
fn the_agents_unit_with_the_example_file_is_an_lb_agent_command_line() {
    let unit = read("lb-agent@.service");
    let defaults = assignments(directives(&unit, "Environment").into_iter().flat_map(str::split_whitespace));
    let example = read("agent.env.example");
    let set = assignments(example.lines().filter(|l| !l.starts_with('#')));
    let optional = assignments(example.lines().filter_map(|l| l.strip_prefix('#')).filter(|l| l.starts_with("LB_")));
    // Every optional line of the example shows the unit's default.
    for (name, value) in &optional {
        assert_eq!(defaults.get(name), Some(value), "agent.env.example's #{name}={value} is not the unit's default");
    }
    let mut env = defaults.clone();
    env.extend(set.clone());
    let cli = parse(&exec_start(&unit, &env));
    let LbCommand::Agent(args) = cli.command else { panic!("lb-agent@.service runs {:?}", cli.command) };
    assert_eq!(args.service, set["LB_SERVICE"]);
    assert_eq!(args.address.to_string(), set["LB_ADDRESS"]);
    // Every variable the unit reads is set by the example or defaulted by the unit.
    for word in directives(&unit, "ExecStart")[0].split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            assert!(set.contains_key(name) || optional.contains_key(name), "agent.env.example does not name {name}");
        }
    }
    assert_eq!(directives(&unit, "EnvironmentFile"), ["/etc/lb/agent/%i.env"]);
    assert_eq!(directives(&unit, "User"), ["lb"]);
}

#[test]
fn the_shipped_config_passes_lb_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["check", "--config"])
        .arg(packaging("lb.toml"))
        .output()
        .expect("lb check runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim() == "ok", "packaging/lb.toml: {text}");
}
