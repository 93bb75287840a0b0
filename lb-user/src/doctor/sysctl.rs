//! Kernel settings on the paths around XDP: reverse-path filtering.
use super::checks::RP_FILTER;
use super::Finding;

fn read(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn rp_filter(name: &str) -> Finding {
    let all = read("/proc/sys/net/ipv4/conf/all/rp_filter");
    let dev = read(&format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"));
    rp_filter_from(name, all, dev)
}

/// The kernel applies max(conf.all, conf.IF): 0 off, 1 strict, 2 loose.
fn rp_filter_from(name: &str, all: Option<u32>, dev: Option<u32>) -> Finding {
    let (Some(all), Some(dev)) = (all, dev) else {
        return Finding::ok(RP_FILTER, format!("cannot read rp_filter for {name} (no IPv4 on it?)"));
    };
    let effective = all.max(dev);
    let meaning = match effective {
        0 => "off",
        1 => "strict",
        _ => "loose",
    };
    let shown =
        format!("rp_filter on {name} is {effective} ({meaning}; all={all}, {name}={dev}, the kernel uses the larger)");
    if effective != 1 {
        return Finding::ok(RP_FILTER, shown);
    }
    // sysctl keys spell a `.` in an interface name (VLANs: eth0.100) as `/`.
    let key = name.replace('.', "/");
    Finding::problem(
        RP_FILTER,
        format!("{shown}: packets whose reply would leave by another interface are dropped, which breaks asymmetric and DSR paths"),
        Some(format!("`sysctl -w net.ipv4.conf.{key}.rp_filter=2` (loose)")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_is_flagged_with_the_loose_fix() {
        let f = rp_filter_from("eth0.100", Some(0), Some(1));
        assert!(!f.ok);
        assert_eq!(f.fix.as_deref(), Some("`sysctl -w net.ipv4.conf.eth0/100.rp_filter=2` (loose)"));
        assert!(!rp_filter_from("eth0", Some(1), Some(0)).ok);
        assert!(rp_filter_from("eth0", Some(1), Some(2)).ok);
        assert!(rp_filter_from("eth0", Some(0), Some(0)).ok);
        assert!(rp_filter_from("eth0", None, Some(1)).ok);
    }
}
