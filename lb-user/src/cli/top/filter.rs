//! The `/` filter: a row stays when the text appears, in any case, in its service's name,
//! its VIP or its backend's address. An empty filter keeps every row.
use super::rates::Row;

pub fn matches(row: &Row, filter: &str) -> bool {
    let needle = filter.trim().to_lowercase();
    if needle.is_empty() {
        return true;
    }
    let b = &row.backend;
    [&b.service, &b.vip, &b.address].iter().any(|text| text.to_lowercase().contains(&needle))
}

/// The rows `filter` keeps, in their order.
pub fn apply(rows: Vec<Row>, filter: &str) -> Vec<Row> {
    rows.into_iter().filter(|r| matches(r, filter)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::top::rates::{tests::backend, Rates};

    fn row(service: &str, address: &str) -> Row {
        Row { backend: backend(service, address, 0, None, 0), rates: Rates::default() }
    }

    #[test]
    fn matches_service_vip_or_backend_in_any_case() {
        let r = row("Web-Front", "172.20.0.11:80");
        for hit in ["", "  ", "web", "FRONT", "172.20.0.11", ".11:80", "10.0.0.1:80", " web "] {
            assert!(matches(&r, hit), "{hit:?}");
        }
        for miss in ["api", "172.20.0.12", "web front"] {
            assert!(!matches(&r, miss), "{miss:?}");
        }
    }

    #[test]
    fn apply_keeps_the_order_of_the_rows_it_keeps() {
        let rows = vec![row("web", "10.0.1.2:80"), row("api", "10.0.2.1:80"), row("web", "10.0.1.1:80")];
        let kept: Vec<String> = apply(rows, "web").into_iter().map(|r| r.backend.address).collect();
        assert_eq!(kept, ["10.0.1.2:80", "10.0.1.1:80"]);
    }
}
