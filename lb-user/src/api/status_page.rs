//! The status page's HTML (`GET /`): one self-contained document, its CSS and script
//! embedded in the binary, nothing fetched from elsewhere. The server renders the whole
//! table, so the page is complete without JavaScript (totals, no rates; a `<noscript>`
//! refresh every 5 s); the script (`assets/status.js`) then polls `/v1/status` once a second
//! and redraws the same structure with rates and charts. Both keep the DOM the browser test
//! reads: a `tr.backend` per backend with `data-service`, `data-backend` and one
//! `td[data-field]` per column.
use std::fmt::Write as _;

use super::status_model::{BackendStatus, ServiceStatus, Status};

const CSS: &str = include_str!("assets/status.css");
const SCRIPT: &str = include_str!("assets/status.js");

/// The backend table's columns: (field, heading, numeric). The script draws the same ones.
const COLUMNS: [(&str, &str, bool); 12] = [
    ("address", "Backend", false),
    ("state", "State", false),
    ("health", "Health", false),
    ("circuit", "Circuit", false),
    ("weight", "Weight", true),
    ("sources", "Source", false),
    ("flows_rate", "New flows/s", true),
    ("packets_rate", "Packets/s", true),
    ("bytes_rate", "Bytes/s", true),
    ("new_flows", "Flows", true),
    ("bytes", "Bytes", true),
    ("chart", "Flows/s, 3 min", false),
];

pub fn render(status: &Status) -> String {
    let mut html = String::with_capacity(8192);
    html.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>lb status</title>\n<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n<style>\n",
    );
    html.push_str(CSS);
    html.push_str("</style>\n</head>\n<body data-updates=\"0\">\n");
    let _ = write!(
        html,
        "<header><h1>lb</h1><span class=\"meta\">path <b id=\"path\">{}</b></span>\
         <span class=\"meta\">services <b id=\"service-count\">{}</b></span>\
         <span class=\"meta\" id=\"sampled\" data-sampled-at=\"{}\">counters at {}</span>\
         <span id=\"error\" role=\"alert\"></span></header>\n<main>\n<div id=\"services\">\n",
        escape(or_dash(&status.path)),
        status.services.len(),
        status.sampled_at_ms,
        status.sampled_at_ms,
    );
    if status.services.is_empty() {
        html.push_str("<p class=\"empty\">No services are configured.</p>\n");
    }
    for service in &status.services {
        service_section(&mut html, service, &status.path);
    }
    html.push_str("</div>\n");
    drops_section(&mut html, status);
    html.push_str("</main>\n<script>\n");
    // The script draws the same columns: from here, so the two cannot drift apart.
    let columns: Vec<[&str; 2]> = COLUMNS.iter().map(|(field, heading, _)| [*field, *heading]).collect();
    let _ = writeln!(html, "const COLUMNS = {};", serde_json::json!(columns));
    html.push_str(SCRIPT);
    html.push_str("</script>\n</body>\n</html>\n");
    html
}

fn service_section(html: &mut String, s: &ServiceStatus, path: &str) {
    let _ = write!(
        html,
        "<section class=\"service\" data-service=\"{name}\"><h2>{name}<span class=\"facts\">{vip} {protocol} · \
         {path} · {algorithm} · {forwarding}</span></h2>\n<table><thead><tr>",
        name = escape(&s.name),
        vip = escape(&s.vip),
        protocol = escape(&s.protocol),
        path = escape(or_dash(path)),
        algorithm = escape(&s.algorithm),
        forwarding = escape(&s.forwarding),
    );
    for (_, heading, numeric) in COLUMNS {
        let _ = write!(html, "<th{}>{heading}</th>", if numeric { " class=\"num\"" } else { "" });
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for b in &s.backends {
        backend_row(html, &s.name, b);
    }
    html.push_str("</tbody></table></section>\n");
}

fn backend_row(html: &mut String, service: &str, b: &BackendStatus) {
    let _ = write!(
        html,
        "<tr class=\"backend\" data-service=\"{}\" data-backend=\"{}\">",
        escape(service),
        escape(&b.address)
    );
    for (field, heading, numeric) in COLUMNS {
        let (class, text) = match field {
            "address" => (String::new(), b.address.clone()),
            "state" => (format!("state-{}", b.state), b.state.clone()),
            "health" => (format!("health-{}", b.health), b.health.clone()),
            "circuit" => (format!("circuit-{}", b.circuit), b.circuit.clone()),
            "weight" => (String::new(), b.weight.to_string()),
            "sources" => (String::new(), b.sources.join(", ")),
            "new_flows" => (String::new(), b.new_flows.to_string()),
            "bytes" => (String::new(), b.bytes.to_string()),
            // Rates and charts need two samples: the script's.
            _ => (String::new(), "–".to_string()),
        };
        let class = if numeric { format!("num {class}") } else { class };
        let _ = write!(
            html,
            "<td data-field=\"{field}\" data-label=\"{heading}\" class=\"{}\">{}</td>",
            escape(class.trim()),
            escape(&text)
        );
    }
    html.push_str("</tr>\n");
}

fn drops_section(html: &mut String, status: &Status) {
    html.push_str(
        "<section id=\"drops\"><h2>Drops and refusals<span class=\"facts\">per second, and since start</span></h2>\n\
         <div class=\"drops\">\n",
    );
    for (reason, total) in &status.drops {
        let _ = writeln!(
            html,
            "<div class=\"drop\" data-reason=\"{r}\"><span class=\"reason\">{r}</span>\
             <span class=\"num\" data-field=\"rate\">–</span><span class=\"num total\" data-field=\"total\">{total}</span>\
             <span data-field=\"chart\"></span></div>",
            r = escape(reason)
        );
    }
    html.push_str("</div></section>\n");
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "–"
    } else {
        text
    }
}

/// Text for an HTML element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn status() -> Status {
        Status {
            path: "xdp".into(),
            sampled_at_ms: 1_700_000_000_000,
            services: vec![ServiceStatus {
                name: "web<script>".into(),
                vip: "10.0.0.1:80".into(),
                protocol: "tcp".into(),
                algorithm: "maglev".into(),
                forwarding: "nat".into(),
                backends: vec![BackendStatus {
                    address: "10.0.1.1:80".into(),
                    state: "drain".into(),
                    health: "up".into(),
                    circuit: "closed".into(),
                    weight: 3,
                    sources: vec!["config".into(), "registration".into()],
                    new_flows: 42,
                    packets: Some(420),
                    bytes: 4200,
                }],
            }],
            drops: BTreeMap::from([("fragment".to_string(), 5)]),
        }
    }

    #[test]
    fn every_backend_is_a_row_with_its_fields_and_without_javascript_shows_totals() {
        let html = render(&status());
        assert!(html.contains("data-backend=\"10.0.1.1:80\""), "{html}");
        assert!(html.contains("<td data-field=\"state\" data-label=\"State\" class=\"state-drain\">drain</td>"));
        assert!(html.contains("<td data-field=\"new_flows\" data-label=\"Flows\" class=\"num\">42</td>"));
        assert!(html.contains("config, registration"));
        assert!(html.contains("data-reason=\"fragment\""));
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\""));
    }

    #[test]
    fn names_are_escaped() {
        let html = render(&status());
        assert!(html.contains("web&lt;script&gt;"));
        assert!(!html.contains("web<script>"));
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        let html = render(&status());
        for outside in ["http://", "https://", "src=", "<link"] {
            assert!(!html.contains(outside), "the page refers outside itself: {outside}");
        }
    }
}
