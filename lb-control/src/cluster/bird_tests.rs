//! The rendered BIRD files, read as text and, where the `bird` binary is installed, parsed
//! by BIRD itself (`bird -p`): the real check that BIRD accepts what `lb` writes.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;
use lb_config::{Neighbor, Speaker};

fn bgp(neighbors: &[(&str, u32)]) -> Bgp {
    Bgp {
        speaker: Speaker::Bird,
        asn: 65010,
        router_id: "10.61.0.11".parse().unwrap(),
        neighbors: neighbors.iter().map(|(a, asn)| Neighbor { address: a.parse().unwrap(), asn: *asn }).collect(),
        hold_time: Duration::from_secs(9),
        bird: PathBuf::from("bird"),
        run_dir: PathBuf::from("/run/lb/bird"),
    }
}

fn announcing(vips: &[&str]) -> Announcement {
    Announcement { vips: vips.iter().map(|v| v.parse().unwrap()).collect(), draining: false }
}

#[test]
fn the_config_names_the_router_each_neighbor_and_its_timers() {
    let conf = render_config(&bgp(&[("10.61.0.1", 65000), ("fd00:61::1", 65001)]), Path::new("/run/x"));
    assert!(conf.contains("router id 10.61.0.11;"), "{conf}");
    assert!(conf.contains("include \"/run/x/vips.conf\";"), "{conf}");
    assert!(conf.contains("protocol bgp lb_peer_10_61_0_1 {"), "{conf}");
    assert!(conf.contains("neighbor 10.61.0.1 as 65000;"), "{conf}");
    assert!(conf.contains("neighbor fd00:61::1 as 65001;"), "{conf}");
    assert!(conf.contains("local as 65010;"), "{conf}");
    assert!(conf.contains("hold time 9;") && conf.contains("keepalive time 3;"), "{conf}");
    assert!(conf.contains("export where proto = \"lb_vips4\";"), "{conf}");
    assert!(conf.contains("export where proto = \"lb_vips6\";"), "{conf}");
    assert_eq!(conf.matches("import none;").count(), 2, "{conf}");
    assert!(!conf.contains("protocol kernel"), "the blackholes must not reach the host's table: {conf}");
}

#[test]
fn the_vips_file_has_one_host_route_per_address_in_its_family() {
    let vips = render_vips(&announcing(&["10.100.0.2", "10.100.0.1", "2001:db8::1"]));
    let v4 = vips.split("protocol static lb_vips6").next().unwrap();
    assert!(v4.contains("route 10.100.0.1/32 blackhole;") && v4.contains("route 10.100.0.2/32 blackhole;"));
    assert!(vips.contains("route 2001:db8::1/128 blackhole;"));
    assert!(!v4.contains("2001:db8::1"));
    let empty = render_vips(&Announcement::default());
    assert!(!empty.contains("route"), "{empty}");
    assert!(empty.contains("protocol static lb_vips4") && empty.contains("protocol static lb_vips6"));
}

#[test]
fn sessions_are_up_only_when_established() {
    let out = "BIRD 2.0.12 ready.\n\
        Name       Proto      Table      State  Since         Info\n\
        device1    Device     ---        up     08:00:00.000  \n\
        lb_vips4   Static     master4    up     08:00:00.000  \n\
        lb_peer_10_61_0_1 BGP        ---        up     08:00:01.000  Established   \n\
        lb_peer_10_61_0_2 BGP        ---        start  08:00:00.000  Active        Socket: Connection refused\n";
    let n: Vec<IpAddr> = ["10.61.0.1", "10.61.0.2", "10.61.0.3"].iter().map(|a| a.parse().unwrap()).collect();
    let up = sessions_up(out, &n);
    assert_eq!(up.values().copied().collect::<Vec<_>>(), [true, false, false]);
}

#[test]
fn configure_replies() {
    assert!(reconfigured("BIRD 2.0.12 ready.\nReading configuration from /run/lb/bird/bird.conf\nReconfigured\n"));
    assert!(!reconfigured(
        "BIRD 2.0.12 ready.\n/run/lb/bird/vips.conf:3:9 syntax error, unexpected CF_SYM_UNDEFINED\n"
    ));
}

/// BIRD itself parses both files: under `CI=true` a missing `bird` fails the test, else it
/// is skipped with a message.
#[test]
fn bird_accepts_the_rendered_files() {
    let Some(bird) = bird_binary() else { return };
    let dir = Scratch(std::env::temp_dir().join(format!("lb-bird-parse-{}", std::process::id())));
    std::fs::create_dir_all(dir.path()).unwrap();
    let b = bgp(&[("10.61.0.1", 65000), ("10.61.0.2", 65010), ("fd00:61::1", 65000)]);
    for a in [announcing(&["10.100.0.1", "10.100.0.2", "2001:db8::1"]), Announcement::default()] {
        std::fs::write(dir.path().join(VIPS_FILE), render_vips(&a)).unwrap();
        let conf = dir.path().join(CONFIG_FILE);
        std::fs::write(&conf, render_config(&b, dir.path())).unwrap();
        let out = Command::new(&bird).arg("-p").arg("-c").arg(&conf).output().unwrap();
        assert!(
            out.status.success(),
            "bird -p rejected:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&conf).unwrap(),
            render_vips(&a)
        );
    }
}

fn bird_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/bird", "/usr/bin/bird"].iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: BIRD 2 (bird) must be installed");
        eprintln!("skipped: no bird binary (apt install bird2)");
    }
    found
}

/// A directory removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
