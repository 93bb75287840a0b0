//! The documentation (`README.md` and `docs/`) against the code, so the two cannot drift
//! apart (host test, no root). Each check reads the page that holds the material:
//!
//! - Config keys (`docs/configuration.md`) come from the real deserializer, not from a list
//!   kept by hand: a probe key that no table accepts makes serde's `deny_unknown_fields` name
//!   every key the table does accept ("unknown key `x`, expected one of `a`, `b`"). Probing
//!   `[key]` and `[[key]]` for each of them tells sections from plain keys, so new sections
//!   are found too. Each section needs a heading naming it (`` `[daemon]` ``) with a table
//!   row `` | `key` | `` per key, and no row for a key the schema does not have. Every TOML
//!   example in the documentation must be a valid config.
//! - Subcommands, flags and their values (`docs/cli.md`) come from clap (`Cli::command()`):
//!   each subcommand needs a `` ### `lb NAME` `` section naming all of them. The JSON fields
//!   of `lb list` and `lb explain` come from the row types themselves, the XDP action names
//!   from lb-common.
//! - Admin API routes (`docs/api.md`) are read from the router's source (`.route("PATH",
//!   method(...))`), the JSON fields of `GET /v1/services` from its view types.
//! - Metric families and their types (`docs/metrics.md`) are read from the sources that
//!   expose them (`family("lb_...", "counter", ...)`).
//! - Drop reasons come from lb-common, map names from lb-common's pinned-map table (`abi::PINNED_MAPS`)
//!   (`docs/architecture.md`).
//! - The test network (`docs/testing.md`) comes from the `testenv` crate's constants.
//! - Every relative link in `README.md` and `docs/` leads to a file that exists, inside the
//!   repository, and to a heading that exists when it names one; no page mentions files
//!   that live outside the repository.
//!
//! The paths into the code under test are the `use` lines and constants right below: adjust
//! them there when modules move between crates.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use lb_common::reason::{ACTION_NAMES, DROP_REASON_NAMES};
use lb_config::Config;
use lb_control::{BackendView, CheckView, ServiceView};
use lb_proxy::BackendCounters;
use lb_user::cli::Cli;
use lb_xdp::explain::Explanation;
use lb_xdp::inspect::{BackendRow, FlowRow, Stats, VipRow};
use serde::Serialize;

mod common;
use common::sources::{crate_sources, literal, metric_families, read, rust_files, workspace, CRATE_PREFIX};

/// The pages, relative to the workspace.
const README: &str = "README.md";
const DOCS: &str = "docs";
const INDEX: &str = "docs/README.md";
const CONFIGURATION: &str = "docs/configuration.md";
const CLI: &str = "docs/cli.md";
const API: &str = "docs/api.md";
const METRICS: &str = "docs/metrics.md";
const ARCHITECTURE: &str = "docs/architecture.md";
const TESTING: &str = "docs/testing.md";

/// README.md is the front page: what `lb` is, two commands, a first config, the headline
/// figures and links. Everything else lives in docs/.
const README_MAX_LINES: usize = 250;

/// README.md and every Markdown file in docs/, as paths relative to the workspace.
fn pages() -> Vec<String> {
    let dir = workspace().join(DOCS);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("{DOCS}/{name}"))
        .collect();
    pages.sort();
    pages.insert(0, README.to_string());
    pages
}

/// Fails once, listing everything that is missing.
fn report(page: &str, what: &str, missing: &[String]) {
    assert!(missing.is_empty(), "{page} is out of step ({what}):\n  - {}", missing.join("\n  - "));
}

// ---------------------------------------------------------------------------------------
// Markdown, as far as these checks need it.

/// Whether each line of `text` is inside a fenced code block (the fences included), so that
/// a `# comment` in a shell or TOML example is not taken for a heading.
fn fenced(text: &str) -> Vec<bool> {
    let mut inside = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                inside = !inside;
                true
            } else {
                inside
            }
        })
        .collect()
}

/// The heading level of `line` (`## x` is 2), or 0 when it is no heading.
fn level(line: &str) -> usize {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
        hashes
    } else {
        0
    }
}

/// The headings of `text` outside code blocks: (line index, level, line).
fn headings(text: &str) -> Vec<(usize, usize, &str)> {
    let code = fenced(text);
    text.lines()
        .enumerate()
        .filter(|&(i, line)| !code[i] && level(line) > 0)
        .map(|(i, line)| (i, level(line), line))
        .collect()
}

/// The lines of the section under the first heading that contains `needle`, up to the next
/// heading of the same or a higher level. `None` if no heading contains it.
fn section(text: &str, needle: &str) -> Option<String> {
    let all = headings(text);
    let at = all.iter().position(|(_, _, line)| line.contains(needle))?;
    let (start, own, _) = all[at];
    let end = all[at + 1..].iter().find(|&&(_, l, _)| l <= own).map_or(usize::MAX, |&(i, _, _)| i);
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[start + 1..end.min(lines.len())].join("\n"))
}

/// The words in backticks in `text`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Keys of the first column of the Markdown table rows in `text`: `` | `key` | ... ``.
fn table_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(key, _)| key.to_string()))
        .collect()
}

/// The cells of the table row whose first cell is exactly `first`, trimmed.
fn row<'a>(text: &'a str, first: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
}

/// GitHub's anchor for a heading: lower case, only letters, digits, `_`, `-` and spaces
/// kept, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '_' || c == '-' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor of `text`, with GitHub's `-1`, `-2` for repeated headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, _, line) in headings(text) {
        let base = slug(line);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// The targets of the inline links and images in `text`, outside code blocks:
/// `[text](target)`, `![alt](target)`.
fn links(text: &str) -> Vec<String> {
    let code = fenced(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if code[i] {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            match after.find(')') {
                Some(end) => {
                    out.push(after[..end].to_string());
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Config keys, as the schema accepts them: docs/configuration.md.

const PROBE_KEY: &str = "readme_probe_no_such_key";

/// Every key the table that `prefix` ends in accepts, read from the unknown-key error a
/// probe key gets there; `None` if the probe is not met with an unknown-key error (then
/// `prefix` does not end in a table).
fn accepted_keys(prefix: &str) -> Option<Vec<String>> {
    let text = format!("{prefix}{PROBE_KEY} = 1\n");
    let error = Config::from_str(&text, "probe.toml").err()?.to_string();
    let line = error.lines().find(|l| l.contains(&format!("unknown key `{PROBE_KEY}`")))?;
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
            Config::from_str(&format!("{prefix}{PROBE_KEY} = 1\n"), "probe.toml").err().map(|e| e.to_string())
        )
    });
    let mut leaves = Vec::new();
    for key in keys {
        let dotted = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
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
    out.push(Section { header, keys: leaves });
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
    for want in ["[daemon]", "[[service]]", "[service.health_check]", "[[service.backend]]"] {
        assert!(headers.contains(&want), "section {want} not found by probing; found {headers:?}");
    }
    let daemon = sections.iter().find(|s| s.header == "[daemon]").unwrap();
    assert!(daemon.keys.iter().any(|k| k == "snat_ports"), "{:?}", daemon.keys);
    let check = sections.iter().find(|s| s.header == "[service.health_check]").unwrap();
    assert!(check.keys.iter().any(|k| k == "type"), "serde renames are seen: {:?}", check.keys);
}

#[test]
fn every_config_key_has_a_row_in_its_section_of_docs_configuration() {
    let page = read(CONFIGURATION);
    let mut missing = Vec::new();
    for s in schema_sections() {
        if s.header.is_empty() {
            // The file's top level: only sections so far. A plain key there would need a
            // home in the reference: say so rather than ignore it.
            for key in &s.keys {
                missing.push(format!("top-level key `{key}` (no section documents it)"));
            }
            continue;
        }
        let heading = format!("`{}`", s.header);
        let Some(body) = section(&page, &heading) else {
            missing.push(format!("a heading naming {heading} for the config section {}", s.header));
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
    report(CONFIGURATION, "config reference", &missing);
}

#[test]
fn every_toml_example_in_the_docs_is_a_valid_config() {
    let mut found = 0;
    let mut invalid = Vec::new();
    for page in pages() {
        let text = read(&page);
        // A fence of another language may hold ```toml only as text: count fences in order.
        let code = fenced(&text);
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let opens_toml = code[i] && lines[i].trim_start() == "```toml";
            if !opens_toml {
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].trim_start().starts_with("```") {
                end += 1;
            }
            found += 1;
            let example = lines[start..end].join("\n");
            // Errors name the line and column within the example.
            if let Err(e) = Config::from_str(&example, "example") {
                invalid.push(format!("the TOML example at {page}:{} is not a valid config: {e}", start + 1));
            }
            i = end + 1;
        }
    }
    assert!(found >= 4, "found only {found} TOML examples in README.md and docs/");
    report("README.md and docs/", "config examples", &invalid);
}

// ---------------------------------------------------------------------------------------
// CLI, as clap defines it: docs/cli.md.

/// `flag` as a whole word: `-c` not as the tail of `--config`, `--proto` not as the head of
/// `--protocol`.
fn mentions_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        before != Some('-') && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
    })
}

fn check_command(page: &str, cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    let heading = format!("### `{path}`");
    let Some(body) = section(page, &heading) else {
        missing.push(format!("a \"{heading}\" section for the subcommand `{path}`"));
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
        let values = if arg.get_action().takes_values() { arg.get_possible_values() } else { Vec::new() };
        for value in values {
            if !value.is_hide_set() && !body.contains(value.get_name()) {
                missing.push(format!(
                    "value `{}` of {} in the \"{heading}\" section",
                    value.get_name(),
                    arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"))
                ));
            }
        }
    }
    for sub in cmd.get_subcommands() {
        check_command(page, sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_subcommand_flag_and_value_is_in_docs_cli() {
    let page = read(CLI);
    let cli = Cli::command();
    let mut missing = Vec::new();
    let names: BTreeSet<String> = cli.get_subcommands().map(|s| s.get_name().to_string()).collect();
    assert!(!names.is_empty(), "clap reports no subcommands");
    for sub in cli.get_subcommands() {
        check_command(&page, sub, &format!("lb {}", sub.get_name()), &mut missing);
    }
    // And no reference section for a subcommand that does not exist.
    for (_, _, line) in headings(&page).into_iter().filter(|(_, l, _)| *l == 3) {
        let Some(rest) = line.strip_prefix("### `lb ") else {
            continue;
        };
        let name = rest.split(['`', ' ']).next().unwrap_or("");
        if !names.contains(name) {
            missing.push(format!("no such subcommand: \"{line}\" (clap has {names:?})"));
        }
    }
    report(CLI, "CLI reference", &missing);
}

// ---------------------------------------------------------------------------------------
// Output formats: docs/cli.md and docs/api.md.

/// The JSON object keys of `value`.
fn json_fields<T: Serialize>(value: &T) -> Vec<String> {
    match serde_json::to_value(value).expect("serializes") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("expected a JSON object, got {other}"),
    }
}

fn check_fields(page: &str, heading: &str, what: &str, fields: Vec<String>, missing: &mut Vec<String>) {
    let Some(body) = section(page, heading) else {
        missing.push(format!("a \"{heading}\" section"));
        return;
    };
    for field in fields {
        if !body.contains(&format!("`{field}`")) {
            missing.push(format!("JSON field `{field}` of {what} in the \"{heading}\" section"));
        }
    }
}

#[test]
fn every_json_field_of_lb_list_and_lb_explain_is_in_docs_cli() {
    let page = read(CLI);
    let s = String::new;
    // Struct literals, not Default: a new field breaks this build until it is listed here,
    // and then the check below asks the page for it too.
    let vip = VipRow {
        service: s(),
        vip: s(),
        protocol: s(),
        algorithm: s(),
        forwarding: s(),
        backends: 0,
        announced: Some(true),
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
        backend_retired: false,
        snat_port: None,
        idle_seconds: 0.0,
        closing: false,
    };
    let stats = Stats {
        actions: Default::default(),
        drops: Default::default(),
        ratelimited: Default::default(),
        acl_denied: Default::default(),
    };
    let explanation =
        Explanation { service: s(), algorithm: s(), decision: s(), backend: None, ring_slot: None, hash: 0 };
    let mut missing = Vec::new();
    let list = "### `lb list`";
    check_fields(&page, list, "lb list vips", json_fields(&vip), &mut missing);
    check_fields(&page, list, "lb list backends", json_fields(&backend), &mut missing);
    check_fields(&page, list, "lb list flows", json_fields(&flow), &mut missing);
    check_fields(&page, list, "lb list stats", json_fields(&stats), &mut missing);
    check_fields(&page, "### `lb explain`", "lb explain", json_fields(&explanation), &mut missing);
    report(CLI, "JSON output", &missing);
}

#[test]
fn every_xdp_action_name_is_in_the_lb_list_section_of_docs_cli() {
    let page = read(CLI);
    let heading = "### `lb list`";
    let body = section(&page, heading).unwrap_or_else(|| panic!("{CLI} has no \"{heading}\" section"));
    let missing: Vec<String> = ACTION_NAMES
        .iter()
        .filter(|action| !body.contains(&format!("`{action}`")))
        .map(|action| format!("XDP action name `{action}` (a key of `lb list stats`) in \"{heading}\""))
        .collect();
    report(CLI, "XDP action names", &missing);
}

#[test]
fn every_json_field_of_get_v1_services_is_in_docs_api() {
    let page = read(API);
    let s = String::new;
    // Struct literals, as above: a new field must be listed here, then on the page.
    let counters = BackendCounters {
        connections_total: 0,
        active: 0,
        bytes_in: 0,
        bytes_out: 0,
        connect_failures_total: 0,
        succeeded_total: 0,
        failed_total: 0,
    };
    let check = CheckView { ok: true, detail: s(), duration_seconds: 0.0, age_seconds: 0.0 };
    let backend = BackendView {
        address: s(),
        weight: 0,
        api_weight: None,
        slow_start_percent: None,
        state: s(),
        health: s(),
        last_check: Some(check.clone()),
        sources: Vec::new(),
        lease_expires_in_seconds: None,
        proxy: Some(counters),
        circuit: s(),
        ejections_total: 0,
        agent: None,
    };
    let service = ServiceView {
        name: s(),
        vip: s(),
        protocol: s(),
        algorithm: s(),
        forwarding: s(),
        announced: Some(true),
        backends: vec![backend.clone()],
    };
    let heading = "`GET /v1/services`";
    let mut missing = Vec::new();
    check_fields(&page, heading, "a service", json_fields(&service), &mut missing);
    check_fields(&page, heading, "a backend", json_fields(&backend), &mut missing);
    check_fields(&page, heading, "a backend's last_check", json_fields(&check), &mut missing);
    check_fields(&page, heading, "a backend's proxy counters", json_fields(&counters), &mut missing);
    report(API, "GET /v1/services", &missing);
}

// ---------------------------------------------------------------------------------------
// Sources: metric families and admin API routes, read from the crates' code.

#[test]
fn every_metric_family_is_in_docs_metrics_with_its_type() {
    let families = metric_families();
    assert!(families.len() >= 20, "read only {} metric families from the sources: {families:?}", families.len());
    let page = read(METRICS);
    let rows = table_keys(&page);
    let mut missing = Vec::new();
    for (name, kinds) in &families {
        if kinds.len() != 1 {
            missing.push(format!("the code gives `{name}` more than one type: {kinds:?}"));
            continue;
        }
        let kind = kinds.iter().next().unwrap();
        // The contract: counters, and only counters, end in `_total`.
        if (kind == "counter") != name.ends_with("_total") {
            missing.push(format!("`{name}` is a {kind}: only counters end in `_total`"));
        }
        let first = format!("`{name}`");
        match row(&page, &first) {
            None => missing.push(format!("row \"| `{name}` | {kind} |\"")),
            Some(cells) if cells.get(1) != Some(&kind.as_str()) => {
                missing.push(format!("`{name}` is a {kind}, its row says {:?}", cells.get(1)))
            }
            Some(_) => {}
        }
    }
    for name in rows.iter().filter(|r| r.starts_with("lb_") && !families.contains_key(*r)) {
        missing.push(format!("no such metric: row \"| `{name}` |\""));
    }
    report(METRICS, "metric families", &missing);
}

/// (METHOD, path) of every `.route("PATH", get(...).post(...))` in the sources.
fn api_routes() -> BTreeSet<(String, String)> {
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    let mut routes = BTreeSet::new();
    for (_, text) in crate_sources() {
        for (at, _) in text.match_indices(".route(") {
            let args = &text[at + ".route(".len()..];
            let Some((path, rest)) = literal(args.trim_start()) else {
                continue;
            };
            // The handler expression: up to the `)` that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let handler = &rest[..end];
            for method in METHODS {
                let called = handler
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| !handler[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'));
                if called {
                    routes.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    routes
}

#[test]
fn every_admin_api_route_is_in_docs_api() {
    let routes = api_routes();
    assert!(routes.len() >= 10, "read only {routes:?} from the sources");
    let page = read(API);
    let heading = "## Routes";
    let body = section(&page, heading).unwrap_or_else(|| panic!("{API} has no \"{heading}\" section"));
    let rows: BTreeSet<(String, String)> = table_keys(&body)
        .into_iter()
        .filter_map(|key| key.split_once(' ').map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    let mut missing = Vec::new();
    for (method, path) in routes.difference(&rows) {
        missing.push(format!("row \"| `{method} {path}` |\" under \"{heading}\""));
    }
    for (method, path) in rows.difference(&routes) {
        missing.push(format!("no such route: row \"| `{method} {path}` |\""));
    }
    report(API, "admin API routes", &missing);
}

#[test]
fn every_admin_api_route_is_in_the_openapi_description() {
    let routes = api_routes();
    let doc: serde_json::Value =
        serde_json::from_str(&lb_user::api::openapi::document()).expect("the OpenAPI description is JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let described: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flatten().map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let mut missing = Vec::new();
    for (method, path) in routes.difference(&described) {
        missing.push(format!("{method} {path} is not described (add it to `paths` in api/openapi.rs)"));
    }
    for (method, path) in described.difference(&routes) {
        missing.push(format!("{method} {path} is described but the router has no such route"));
    }
    report("lb-user/src/api/openapi.rs", "OpenAPI paths", &missing);
}

// ---------------------------------------------------------------------------------------
// Data-path names: docs/architecture.md.

/// The map names lb-common declares: `map_names` holds only `pub const NAME: &str =
/// "LB_...";` lines, read from source.
/// Every pinned map, from lb-common's one table of them.
fn map_names() -> Vec<String> {
    lb_common::abi::PINNED_MAPS.iter().map(|m| m.name.to_string()).collect()
}

#[test]
fn every_drop_reason_and_map_name_is_in_docs_architecture() {
    let page = read(ARCHITECTURE);
    let mut missing = Vec::new();

    let heading = "## Drop reasons";
    let reasons = section(&page, heading).map(|body| table_keys(&body));
    let Some(reasons) = reasons else {
        panic!("{ARCHITECTURE} has no \"{heading}\" section");
    };
    for reason in DROP_REASON_NAMES {
        if !reasons.contains(reason) {
            missing.push(format!("drop reason row \"| `{reason}` |\" under \"{heading}\""));
        }
    }
    for row in reasons.iter().filter(|r| !DROP_REASON_NAMES.contains(&r.as_str())) {
        missing.push(format!("no such drop reason: row \"| `{row}` |\""));
    }

    let heading = "## Maps";
    let names = map_names();
    assert!(names.len() >= 10, "read only {names:?} from map_names");
    let Some(maps) = section(&page, heading).map(|body| table_keys(&body)) else {
        panic!("{ARCHITECTURE} has no \"{heading}\" section");
    };
    for name in &names {
        if !maps.contains(name) {
            missing.push(format!("map row \"| `{name}` |\" under \"{heading}\""));
        }
    }
    for row in maps.iter().filter(|r| !names.contains(r)) {
        missing.push(format!("no such map: row \"| `{row}` |\""));
    }
    report(ARCHITECTURE, "data-path names", &missing);
}

// ---------------------------------------------------------------------------------------
// The test network: docs/testing.md against the testenv crate.

#[test]
fn the_test_network_in_docs_testing_matches_testenv() {
    let page = read(TESTING);
    let heading = "## The test network";
    let body = section(&page, heading).unwrap_or_else(|| panic!("{TESTING} has no \"{heading}\" section"));
    let mut missing = Vec::new();
    let mut hosts = vec![
        (testenv::CLIENT_NS.to_string(), testenv::CLIENT_V4.to_string(), testenv::CLIENT_V6.to_string()),
        (testenv::LB_NS.to_string(), testenv::LB_V4.to_string(), testenv::LB_V6.to_string()),
    ];
    for n in 1..=testenv::SERVERS {
        hosts.push((testenv::server_ns(n), testenv::server_v4(n), testenv::server_v6(n)));
    }
    for (ns, v4, v6) in &hosts {
        match row(&body, &format!("`{ns}`")) {
            None => missing.push(format!("a row for `{ns}` ({v4}, {v6})")),
            Some(cells) => {
                for address in [v4, v6] {
                    if !cells.contains(&address.as_str()) {
                        missing.push(format!("`{ns}`'s row: address {address} (row: {cells:?})"));
                    }
                }
            }
        }
    }
    for n in 1..=testenv::SERVERS {
        let name = testenv::server_name(n);
        if row(&body, &format!("`{}`", testenv::server_ns(n)))
            .is_some_and(|cells| !cells.iter().any(|c| c.contains(&name)))
        {
            missing.push(format!("`{}`'s row: the server's name {name}", testenv::server_ns(n)));
        }
    }
    if row(&body, &format!("`{}`", testenv::SWITCH_NS)).is_none() {
        missing.push(format!("a row for `{}`", testenv::SWITCH_NS));
    }
    for (what, text) in [
        ("the interface", format!("`{}`", testenv::IFACE)),
        ("the bridge", format!("`{}`", testenv::BRIDGE)),
        ("the backend port", format!("port {}", testenv::BACKEND_PORT)),
        ("the IPv4 VIP", format!("`{}`", testenv::VIP_V4)),
        ("the IPv6 VIP", format!("`{}`", testenv::VIP_V6)),
        ("the IPv4 VIP route", format!("`{}/32 via {}`", testenv::VIP_V4, testenv::LB_V4)),
        ("the IPv6 VIP route", format!("`{}/128 via {}`", testenv::VIP_V6, testenv::LB_V6)),
        ("the LB's MAC", format!("`{}`", testenv::LB_MAC)),
        ("the run directory", format!("`{}`", testenv::RUN_DIR)),
        ("the daemon's pin path", format!("`{}`", testenv::LB_PIN_PATH)),
        ("the network's lock", format!("`{}`", testenv::LOCK_FILE)),
        ("the DSR option", "`up --dsr`".to_string()),
        ("the namespaces' prefix", format!("`{}*`", testenv::NS_PREFIX)),
    ] {
        // The lock is named in the layers above the section; the rest in the section.
        let haystack = if what == "the network's lock" { &page } else { &body };
        if !haystack.contains(&text) {
            missing.push(format!("{what}: {text}"));
        }
    }
    report(TESTING, "test network", &missing);
}

// ---------------------------------------------------------------------------------------
// The pages themselves: links, and nothing outside the repository.

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let root = workspace().canonicalize().expect("the workspace exists");
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = workspace().join(&page).parent().unwrap().to_path_buf();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { workspace().join(&page) } else { dir.join(file) };
            let Ok(resolved) = path.canonicalize() else {
                broken.push(format!("{page}: ({target}): no such file {}", path.display()));
                continue;
            };
            if !resolved.starts_with(&root) {
                broken.push(format!("{page}: ({target}) leads outside the repository"));
                continue;
            }
            if !anchor.is_empty() {
                if resolved.extension().is_none_or(|e| e != "md") {
                    broken.push(format!("{page}: ({target}): an anchor into a file that is not Markdown"));
                    continue;
                }
                let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{page}: ({target}): no heading with the anchor #{anchor} in {}",
                        resolved.strip_prefix(&root).unwrap_or(&resolved).display()
                    ));
                }
            }
        }
    }
    assert!(checked >= 50, "checked only {checked} links");
    report("README.md and docs/", "relative links", &broken);
}

#[test]
fn no_page_mentions_files_outside_the_repository() {
    let mut found = Vec::new();
    for page in pages() {
        let text = read(&page);
        for outside in ["../shared", "ARCHITECTURE.md"] {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| l.contains(outside)) {
                found.push(format!("{page}:{}: mentions {outside}: {line}", n + 1));
            }
        }
    }
    report("README.md and docs/", "files outside the repository", &found);
}

#[test]
fn the_docs_index_links_every_page_and_the_readme_links_the_index() {
    let index = read(INDEX);
    let linked: BTreeSet<String> =
        links(&index).into_iter().map(|t| t.split('#').next().unwrap_or("").to_string()).collect();
    let mut missing = Vec::new();
    for page in pages().into_iter().filter(|p| p != README && p != INDEX) {
        let name = page.trim_start_matches(&format!("{DOCS}/")).to_string();
        if !linked.contains(&name) {
            missing.push(format!("a link to {name}"));
        }
    }
    report(INDEX, "the index of docs/", &missing);
    let readme = read(README);
    assert!(links(&readme).iter().any(|t| t == INDEX), "{README} links no {INDEX}");
}

#[test]
fn the_readme_stays_a_front_page() {
    let readme = read(README);
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "{README} has {lines} lines; it is the front page (under {README_MAX_LINES}): move \
         reference material into {DOCS}/"
    );
    for command in ["cargo xtask demo", "cargo xtask test"] {
        assert!(readme.contains(command), "{README} does not name `{command}`");
    }
}

/// Source comments cite the repository's own docs, never a file outside it.
#[test]
fn no_source_file_cites_files_outside_the_repository() {
    let this = PathBuf::from(file!());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace()).expect("workspace").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(CRATE_PREFIX) || name == "xtask" || name == "testenv" {
            files.extend(rust_files(&entry.path()));
        }
    }
    assert!(files.len() > 100, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with(this.file_name().expect("a file name"))) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for outside in ["../shared", "ARCHITECTURE.md"] {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| l.contains(outside)) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    report("the sources", "files outside the repository", &found);
}

/// Each workspace crate's layer in the diagram of `docs/architecture.md`, "Layering": a
/// crate may depend only on crates of a lower layer.
const CRATE_LAYERS: [(&str, u8); 10] = [
    ("lb-common", 0),
    ("lb-rawbpf", 0),
    ("lb-ebpf", 1),
    ("lb-config", 1),
    ("testenv", 1),
    ("lb-control", 2),
    ("lb-xdp", 3),
    ("lb-proxy", 3),
    ("lb-user", 4),
    ("xtask", 5),
];

/// The workspace crates a manifest depends on (normal and build dependencies; dev
/// dependencies serve tests and may reach anywhere).
fn workspace_dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || line == "[build-dependencies]";
            continue;
        }
        let Some((name, _)) = line.split_once('=') else { continue };
        let name = name.trim();
        if in_deps && CRATE_LAYERS.iter().any(|(c, _)| *c == name) {
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_only_on_lower_layers_as_docs_architecture_draws_them() {
    let layering = section(&read(ARCHITECTURE), "## Layering").expect("a Layering section");
    let mut wrong = Vec::new();
    for (krate, layer) in CRATE_LAYERS {
        if !layering.contains(krate) {
            wrong.push(format!("{krate} is not in the Layering section"));
        }
        for dep in workspace_dependencies(&read(&format!("{krate}/Cargo.toml"))) {
            let dep_layer = CRATE_LAYERS.iter().find(|(c, _)| *c == dep).map(|(_, l)| *l).expect("a listed crate");
            if dep_layer >= layer {
                wrong.push(format!("{krate} (layer {layer}) depends on {dep} (layer {dep_layer})"));
            }
        }
    }
    let members = read("Cargo.toml");
    for member in
        members.lines().find(|l| l.starts_with("members = ")).expect("a members line").split('"').skip(1).step_by(2)
    {
        if !CRATE_LAYERS.iter().any(|(c, _)| *c == member) {
            wrong.push(format!("workspace member {member} has no layer here"));
        }
    }
    report(ARCHITECTURE, "crate layering", &wrong);
}

/// Which top-level modules of a crate each top-level module names (`crate::x`, or
/// `super::x` from a file directly under `src/`), unit tests left out.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let all = rust_files(src);
    let module_of = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
        let name = first.trim_end_matches(".rs").to_string();
        (name != "lib" && name != "main").then_some(name)
    };
    let modules: BTreeSet<String> = all.iter().filter_map(|p| module_of(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &all {
        let Some(from) = module_of(path) else { continue };
        let top_level_file = path.parent() == Some(src);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A file's unit tests (`#[cfg(test)]`, at its end) may use any module, as tests do.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for prefix in ["crate::", "super::"] {
            if prefix == "super::" && !top_level_file {
                continue;
            }
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or("").to_string())
                        .collect()
                } else {
                    vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("").to_string()]
                };
                for to in names {
                    if to != from && modules.contains(&to) {
                        graph.entry(from.clone()).or_default().insert(to);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    let mut cycles = Vec::new();
    for (krate, _) in CRATE_LAYERS {
        let graph = module_graph(&workspace().join(krate).join("src"));
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    report(ARCHITECTURE, "module cycles", &cycles);
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_passes_a_tree() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).map(|c| c.len()), Some(4));
}
