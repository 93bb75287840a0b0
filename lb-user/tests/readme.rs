//! README.md against the code, so the two cannot drift apart (host test, no root).
//!
//! - Config keys come from the real deserializer, not from a list kept by hand: a probe key
//!   that no table accepts makes serde's `deny_unknown_fields` name every key the table
//!   does accept ("unknown key `x`, expected one of `a`, `b`"). Probing `[key]` and
//!   `[[key]]` for each of them tells sections from plain keys, so new sections are found
//!   too. Each section needs a README heading naming it (`` `[daemon]` ``) with a table row
//!   `` | `key` | `` per key, and no row for a key the schema does not have.
//! - Subcommands, flags and their values come from clap (`Cli::command()`): each subcommand
//!   needs a `` ### `lb NAME` `` section naming all of them.
//! - The JSON fields of `lb list` and `lb explain` come from the row types themselves, drop
//!   reasons and action names from lb-common, map names from lb-common's pinned-map table (`abi::PINNED_MAPS`).
use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;
use lb_user::config::Config;
use lb_user::dataplane::explain::Explanation;
use lb_user::dataplane::inspect::{BackendRow, FlowRow, Stats, VipRow};
use serde::Serialize;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn readme() -> String {
    let path = workspace().join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Fails once, listing everything that is missing.
fn report(what: &str, missing: &[String]) {
    assert!(
        missing.is_empty(),
        "README.md is out of step with the code ({what}):\n  - {}",
        missing.join("\n  - ")
    );
}

/// The lines of the section under the first heading that contains `needle`, up to the next
/// heading of the same or a higher level. `None` if no heading contains it.
fn section<'a>(text: &'a str, needle: &str) -> Option<String> {
    let lines: Vec<&'a str> = text.lines().collect();
    let level = |line: &str| line.chars().take_while(|&c| c == '#').count();
    let start = lines
        .iter()
        .position(|l| level(l) > 0 && l.contains(needle))?;
    let own = level(lines[start]);
    let body = lines[start + 1..]
        .iter()
        .take_while(|l| !(level(l) > 0 && level(l) <= own))
        .copied()
        .collect::<Vec<_>>();
    Some(body.join("\n"))
}

/// The words in backticks in `text`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Keys of the first column of the Markdown table rows in `text`: `` | `key` | ... ``.
fn table_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(key, _)| key.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Config keys, as the schema accepts them.

const PROBE_KEY: &str = "readme_probe_no_such_key";

/// Every key the table that `prefix` ends in accepts, read from the unknown-key error a
/// probe key gets there; `None` if the probe is not met with an unknown-key error (then
/// `prefix` does not end in a table).
fn accepted_keys(prefix: &str) -> Option<Vec<String>> {
    let text = format!("{prefix}{PROBE_KEY} = 1\n");
    let error = Config::from_str(&text, "probe.toml").err()?.to_string();
    let line = error
        .lines()
        .find(|l| l.contains(&format!("unknown key `{PROBE_KEY}`")))?;
    let (_, expected) = line.split_once(", expected")?;
    Some(backticked(expected))
}

struct Section {
    /// As written in lb.toml: `[daemon]`, `[[service]]`, `[service.health_check]`.
    header: String,
    keys: Vec<String>,
}

/// The sections under `prefix` (the TOML that opens the table at `path`), depth first.
fn discover(prefix: &str, path: &str, header: String, out: &mut Vec<Section>) {
    let keys = accepted_keys(prefix).unwrap_or_else(|| {
        panic!(
            "cannot read the accepted keys of {header:?} from the config's unknown-key error; \
             did its wording change? Config::from_str({prefix:?} + probe) gave: {:?}",
            Config::from_str(&format!("{prefix}{PROBE_KEY} = 1\n"), "probe.toml")
                .err()
                .map(|e| e.to_string())
        )
    });
    let mut leaves = Vec::new();
    for key in keys {
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let table = format!("{prefix}[{dotted}]\n");
        let array = format!("{prefix}[[{dotted}]]\n");
        if accepted_keys(&table).is_some() {
            discover(&table, &dotted, format!("[{dotted}]"), out);
        } else if accepted_keys(&array).is_some() {
            discover(&array, &dotted, format!("[[{dotted}]]"), out);
        } else {
            leaves.push(key);
        }
    }
    out.push(Section {
        header,
        keys: leaves,
    });
}

fn schema_sections() -> Vec<Section> {
    let mut sections = Vec::new();
    discover("", "", String::new(), &mut sections);
    sections
}

#[test]
fn the_probe_finds_the_contracts_sections_and_keys() {
    let sections = schema_sections();
    let headers: Vec<&str> = sections.iter().map(|s| s.header.as_str()).collect();
    for want in [
        "[daemon]",
        "[[service]]",
        "[service.health_check]",
        "[[service.backend]]",
    ] {
        assert!(
            headers.contains(&want),
            "section {want} not found by probing; found {headers:?}"
        );
    }
    let daemon = sections.iter().find(|s| s.header == "[daemon]").unwrap();
    assert!(
        daemon.keys.iter().any(|k| k == "snat_ports"),
        "{:?}",
        daemon.keys
    );
    let check = sections
        .iter()
        .find(|s| s.header == "[service.health_check]")
        .unwrap();
    assert!(
        check.keys.iter().any(|k| k == "type"),
        "serde renames are seen: {:?}",
        check.keys
    );
}

#[test]
fn every_config_key_has_a_row_in_its_section_of_the_config_reference() {
    let readme = readme();
    let mut missing = Vec::new();
    for s in schema_sections() {
        if s.header.is_empty() {
            // The file's top level: only sections so far. A plain key there would need a
            // home in the README: say so rather than ignore it.
            for key in &s.keys {
                missing.push(format!("top-level key `{key}` (no section documents it)"));
            }
            continue;
        }
        let heading = format!("`{}`", s.header);
        let Some(body) = section(&readme, &heading) else {
            missing.push(format!(
                "a heading naming {heading} for the config section {}",
                s.header
            ));
            continue;
        };
        let rows = table_keys(&body);
        for key in &s.keys {
            if !rows.contains(key) {
                missing.push(format!("row \"| `{key}` |\" under the {heading} heading"));
            }
        }
        for row in rows.iter().filter(|r| !s.keys.contains(r)) {
            missing.push(format!(
                "no such key: row \"| `{row}` |\" under {heading} documents a key {} does not accept",
                s.header
            ));
        }
    }
    report("config reference", &missing);
}

// ---------------------------------------------------------------------------------------
// CLI, as clap defines it.

/// `flag` as a whole word: `-c` not as the tail of `--config`, `--proto` not as the head of
/// `--protocol`.
fn mentions_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        before != Some('-') && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
    })
}

fn check_command(readme: &str, cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    let heading = format!("### `{path}`");
    let Some(body) = section(readme, &heading) else {
        missing.push(format!(
            "a \"{heading}\" section for the subcommand `{path}`"
        ));
        return;
    };
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            if !mentions_flag(&body, &format!("--{long}")) {
                missing.push(format!("flag --{long} in the \"{heading}\" section"));
            }
        }
        if let Some(short) = arg.get_short() {
            if !mentions_flag(&body, &format!("-{short}")) {
                missing.push(format!("short flag -{short} in the \"{heading}\" section"));
            }
        }
        // Values of arguments that take one (`vips`, `tcp`); not the true/false of a switch.
        let values = if arg.get_action().takes_values() {
            arg.get_possible_values()
        } else {
            Vec::new()
        };
        for value in values {
            if !value.is_hide_set() && !body.contains(value.get_name()) {
                missing.push(format!(
                    "value `{}` of {} in the \"{heading}\" section",
                    value.get_name(),
                    arg.get_long()
                        .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"))
                ));
            }
        }
    }
    for sub in cmd.get_subcommands() {
        check_command(readme, sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_subcommand_flag_and_value_is_in_the_cli_reference() {
    let readme = readme();
    let cli = lb_user::cli::Cli::command();
    let mut missing = Vec::new();
    let names: BTreeSet<String> = cli
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    assert!(!names.is_empty(), "clap reports no subcommands");
    for sub in cli.get_subcommands() {
        check_command(
            &readme,
            sub,
            &format!("lb {}", sub.get_name()),
            &mut missing,
        );
    }
    // And no reference section for a subcommand that does not exist.
    for line in readme.lines().filter(|l| l.starts_with("### `lb ")) {
        let name = line
            .trim_start_matches("### `lb ")
            .split(['`', ' '])
            .next()
            .unwrap_or("");
        if !names.contains(name) {
            missing.push(format!(
                "no such subcommand: \"{line}\" (clap has {names:?})"
            ));
        }
    }
    report("CLI reference", &missing);
}

// ---------------------------------------------------------------------------------------
// Output formats and data-path names.

/// The JSON object keys of `value`.
fn json_fields<T: Serialize>(value: &T) -> Vec<String> {
    match serde_json::to_value(value).expect("serializes") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("expected a JSON object, got {other}"),
    }
}

fn check_fields(
    readme: &str,
    heading: &str,
    what: &str,
    fields: Vec<String>,
    missing: &mut Vec<String>,
) {
    let Some(body) = section(readme, heading) else {
        missing.push(format!("a \"{heading}\" section"));
        return;
    };
    for field in fields {
        if !body.contains(&format!("`{field}`")) {
            missing.push(format!(
                "JSON field `{field}` of {what} in the \"{heading}\" section"
            ));
        }
    }
}

#[test]
fn every_json_field_of_lb_list_and_lb_explain_is_documented() {
    let readme = readme();
    let s = String::new;
    // Struct literals, not Default: a new field breaks this build until it is listed here,
    // and then the README check below asks for it too.
    let vip = VipRow {
        service: s(),
        vip: s(),
        protocol: s(),
        algorithm: s(),
        forwarding: s(),
        backends: 0,
    };
    let backend = BackendRow {
        service: s(),
        address: s(),
        weight: 0,
        state: s(),
        health: s(),
        source: s(),
        packets: 0,
        bytes: 0,
        new_flows: 0,
        circuit: s(),
    };
    let flow = FlowRow {
        protocol: s(),
        client: s(),
        vip: s(),
        backend: s(),
        snat_port: None,
        idle_seconds: 0.0,
        closing: false,
    };
    let stats = Stats {
        actions: Default::default(),
        drops: Default::default(),
        ratelimited: Default::default(),
    };
    let explanation = Explanation {
        service: s(),
        algorithm: s(),
        decision: s(),
        backend: None,
        ring_slot: None,
        hash: 0,
    };
    let mut missing = Vec::new();
    check_fields(
        &readme,
        "### `lb list`",
        "lb list vips",
        json_fields(&vip),
        &mut missing,
    );
    check_fields(
        &readme,
        "### `lb list`",
        "lb list backends",
        json_fields(&backend),
        &mut missing,
    );
    check_fields(
        &readme,
        "### `lb list`",
        "lb list flows",
        json_fields(&flow),
        &mut missing,
    );
    check_fields(
        &readme,
        "### `lb list`",
        "lb list stats",
        json_fields(&stats),
        &mut missing,
    );
    check_fields(
        &readme,
        "### `lb explain`",
        "lb explain",
        json_fields(&explanation),
        &mut missing,
    );
    report("JSON output", &missing);
}

#[test]
fn every_drop_reason_action_and_map_name_is_documented() {
    let readme = readme();
    let mut missing = Vec::new();
    let rows = table_keys(&readme);
    for reason in lb_common::reason::DROP_REASON_NAMES {
        if !rows.contains(reason) {
            missing.push(format!("drop reason row \"| `{reason}` |\""));
        }
    }
    for action in lb_common::reason::ACTION_NAMES {
        if !readme.contains(&format!("`{action}`")) {
            missing.push(format!(
                "XDP action name `{action}` (a key of `lb list stats`)"
            ));
        }
    }
    for name in lb_common::abi::PINNED_MAPS.iter().map(|s| s.name) {
        if !rows.contains(name) {
            missing.push(format!("map row \"| `{name}` |\""));
        }
    }
    report("data-path names", &missing);
}
