//! contrib/grafana/lb.json against the code: every metric name a panel's (or a template
//! variable's) query uses is a family the daemon exposes, read from the sources the way
//! `readme.rs` reads them (`"lb_name", "kind"` pairs); a histogram's `_bucket`, `_sum` and
//! `_count` series count as their family. Every label a query matches on or aggregates by
//! is one docs/metrics.md gives that metric (whose rows `readme.rs` ties to the code), or
//! one Prometheus adds (`instance`, `job`, and `le` on buckets). No root.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

mod common;
use common::sources::{metric_families, read};

const DASHBOARD: &str = "contrib/grafana/lb.json";
/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];
/// PromQL's grouping keywords: the label list follows in parentheses.
const GROUPING: [&str; 4] = ["by", "without", "on", "ignoring"];

/// Metric → its labels, from the Labels column of docs/metrics.md's table (the values
/// named in parentheses left out).
fn documented_labels() -> BTreeMap<String, BTreeSet<String>> {
    let mut labels = BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(name), Some(cell)) = (cells.get(1), cells.get(3)) else { continue };
        let Some(name) = name.strip_prefix("`lb_").and_then(|n| n.strip_suffix('`')) else { continue };
        labels.insert(format!("lb_{name}"), backticked(&without_parentheses(cell)));
    }
    labels
}

fn without_parentheses(text: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).map(String::from).collect()
}

/// A metric a query names, with the labels its matcher (`{...}`) uses.
#[derive(Debug)]
struct Selector {
    name: String,
    matched: Vec<String>,
}

/// What a query uses: its selectors, and the labels of its `by (...)`-style clauses.
#[derive(Debug, Default)]
struct Query {
    selectors: Vec<Selector>,
    grouped: Vec<String>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Replaces every quoted string with `""`: label values and regexes are not names.
fn strip_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The label names of a matcher's or a grouping's inside: `a=~"", b!=""` or `a, b`.
fn label_names(inside: &str) -> Vec<String> {
    inside
        .split(',')
        .filter_map(|part| {
            let name: String = part.trim().chars().take_while(|c| is_ident(*c)).collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// A small tokenizer over one PromQL expression: identifiers, what follows them.
fn parse(expr: &str) -> Query {
    let text = strip_strings(expr);
    let chars: Vec<char> = text.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    while i < chars.len() {
        if !(is_ident(chars[i]) && (i == 0 || !is_ident(chars[i - 1]))) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let enclosed = |open: char, close: char| -> Option<String> {
            (chars.get(next) == Some(&open))
                .then(|| chars[next + 1..].iter().take_while(|c| **c != close).collect::<String>())
        };
        if word.starts_with("lb_") {
            let matched = enclosed('{', '}').map(|inside| label_names(&inside)).unwrap_or_default();
            query.selectors.push(Selector { name: word, matched });
        } else if GROUPING.contains(&word.as_str()) {
            if let Some(inside) = enclosed('(', ')') {
                query.grouped.extend(label_names(&inside));
            }
        }
    }
    query
}

/// The family a series name belongs to, if the daemon exposes it.
fn family<'a>(name: &'a str, families: &BTreeMap<String, BTreeSet<String>>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    HISTOGRAM_SERIES
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| families.get(*base).is_some_and(|kinds| kinds.contains("histogram")))
}

/// Every query of the dashboard, named by where it is: panel targets and template variables.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?");
                found.push((format!("panel {title:?} target {}", target["refId"]), expr.to_string()));
            }
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["query"]["query"].as_str() {
            found.push((format!("variable ${}", variable["name"].as_str().unwrap_or("?")), query.to_string()));
        }
    }
    found
}

/// Every problem with the dashboard's queries: unknown metrics, labels a metric lacks.
fn problems(dashboard: &Value) -> Vec<String> {
    let families = metric_families();
    assert!(families.len() >= 20, "read only {} metric families from the sources", families.len());
    let labels = documented_labels();
    let mut found = Vec::new();
    for (place, expr) in queries(dashboard) {
        let query = parse(&expr);
        if query.selectors.is_empty() {
            found.push(format!("{place}: no lb_ metric in {expr:?}"));
        }
        let mut known = BTreeSet::new();
        for selector in &query.selectors {
            let Some(family) = family(&selector.name, &families) else {
                found.push(format!("{place}: `{}` is no metric the daemon exposes", selector.name));
                continue;
            };
            let mut allowed: BTreeSet<String> = labels.get(family).cloned().unwrap_or_default();
            allowed.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
            if selector.name.ends_with("_bucket") {
                allowed.insert("le".to_string());
            }
            for label in selector.matched.iter().filter(|l| !allowed.contains(*l)) {
                found.push(format!("{place}: `{}` has no label `{label}` (it has {allowed:?})", selector.name));
            }
            known.extend(allowed);
        }
        for label in query.grouped.iter().filter(|l| !known.contains(*l)) {
            found.push(format!("{place}: no metric of the query has the label `{label}` it groups by"));
        }
    }
    found
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn every_metric_and_label_the_dashboard_queries_is_one_the_daemon_exposes() {
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 30, "found only {} queries in {DASHBOARD}", queries.len());
    let problems = problems(&dashboard);
    assert!(problems.is_empty(), "{DASHBOARD}:\n  {}", problems.join("\n  "));
}

#[test]
fn the_dashboard_covers_the_families_an_operator_watches() {
    let used: BTreeSet<String> =
        queries(&dashboard()).iter().flat_map(|(_, expr)| parse(expr).selectors).map(|s| s.name).collect();
    for name in [
        "lb_backend_new_flows_total",
        "lb_backend_packets_total",
        "lb_backend_bytes_total",
        "lb_backend_up",
        "lb_backend_ejected",
        "lb_backend_weight",
        "lb_drops_total",
        "lb_xdp_actions_total",
        "lb_health_checks_total",
        "lb_health_check_duration_seconds_bucket",
        "lb_proxy_http_rejected_total",
        "lb_config_reloads_total",
        "lb_registrations",
        "lb_store_up",
        "lb_bgp_session_up",
    ] {
        assert!(used.contains(name), "no panel of {DASHBOARD} shows {name}");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_a_prometheus_input_and_service_and_backend_variables() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
    for name in ["DS_PROMETHEUS", "service", "backend"] {
        assert!(variables.contains(&name), "no template variable {name}: {variables:?}");
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "panel {id} has no gridPos");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {id}'s data source");
        }
    }
}

/// The checker itself: a made-up metric, a label a metric lacks and a grouping by a label
/// no metric of the query has are each found.
#[test]
fn a_made_up_metric_or_label_is_found() {
    let mut dashboard = dashboard();
    let panels = dashboard["panels"].as_array_mut().unwrap();
    let bad = [
        r#"sum(rate(lb_made_up_total[5m]))"#,
        r#"sum(rate(lb_backend_packets_total{colour="red"}[5m]))"#,
        r#"sum by (reason) (rate(lb_xdp_actions_total[5m]))"#,
        r#"lb_backend_up_bucket"#,
    ];
    for (i, expr) in bad.iter().enumerate() {
        panels.push(serde_json::json!({
            "id": 1000 + i, "type": "timeseries", "title": format!("bad {i}"),
            "targets": [{ "refId": "A", "expr": expr }],
        }));
    }
    let problems = problems(&dashboard);
    for needle in
        ["`lb_made_up_total` is no metric", "has no label `colour`", "groups by", "`lb_backend_up_bucket` is no metric"]
    {
        assert!(problems.iter().any(|p| p.contains(needle)), "{needle:?} not found in {problems:#?}");
    }
    assert_eq!(problems.len(), bad.len(), "{problems:#?}");
}

#[test]
fn the_tokenizer_reads_names_matchers_and_groupings() {
    let q = parse(
        r#"histogram_quantile(0.9, sum by (le, service) (rate(lb_x_bucket{service=~"lb_not_a_name", backend!=""}[5m])))"#,
    );
    assert_eq!(q.selectors.len(), 1, "{q:?}");
    assert_eq!(q.selectors[0].name, "lb_x_bucket");
    assert_eq!(q.selectors[0].matched, ["service", "backend"]);
    assert_eq!(q.grouped, ["le", "service"]);
}
