//! Two nodes (two controllers over a data path that accepts everything, each with its own
//! config and state file) sharing one real etcd (`/usr/bin/etcd`, started per test on
//! free loopback ports): what one node is told, the other serves.
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use common::etcd::{self as test_etcd, TestEtcd};
use lb_config::desired::Desired;
use lb_config::{AdminState, Config};
use lb_control::cluster::store::Store;
use lb_control::cluster::store_watch;
use lb_control::controller::{Controller, Shared};
use lb_control::datapath::{DataPath, Outcome, Shutdown};
use lb_control::registry::Registry;
use lb_control::{BackendView, ControlError, ControlHandle, Telemetry};

/// Takes every table; the tests look at the controller's view, not at tables.
struct Accepting;

impl DataPath for Accepting {
    fn name(&self) -> &'static str {
        "accepting"
    }
    fn reconcile(&mut self, _desired: &Desired) -> anyhow::Result<()> {
        Ok(())
    }
    fn outcomes(&mut self) -> Vec<Outcome> {
        Vec::new()
    }
    fn shutdown(self: Box<Self>, _detach: bool, _drain: Duration) -> Shutdown {
        Box::pin(async {})
    }
}

/// One balancer's control plane, following the store.
struct Node {
    control: ControlHandle,
    telemetry: Arc<Telemetry>,
    stop: watch::Sender<bool>,
    dir: PathBuf,
}

const SERVICES: &str = "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\n\
                        [[service.backend]]\naddress = \"10.200.1.1:80\"\n\
                        [service.health_check]\ntype = \"none\"\n";

/// Every flow to one backend fails, as the data path's passive outcomes report it.
struct Failing(lb_control::registry::BackendKey);

impl DataPath for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn reconcile(&mut self, _desired: &Desired) -> anyhow::Result<()> {
        Ok(())
    }
    fn outcomes(&mut self) -> Vec<Outcome> {
        vec![Outcome { backend: self.0.clone(), succeeded: 0, failed: 5 }]
    }
    fn shutdown(self: Box<Self>, _detach: bool, _drain: Duration) -> Shutdown {
        Box::pin(async {})
    }
}

/// Passive ejection on: three failed flows in a row eject a backend for 3 s.
const BREAKING: &str = "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\n\
                        [[service.backend]]\naddress = \"10.200.1.1:80\"\n\
                        [[service.backend]]\naddress = \"10.200.1.2:80\"\n\
                        [service.health_check]\ntype = \"none\"\n\
                        [service.circuit_breaker]\nconsecutive_failures = 3\nbase_ejection = \"3s\"\n\
                        max_ejected_percent = 50\n";

impl Node {
    async fn start(etcd: &str, prefix: &str) -> Node {
        Self::start_with(etcd, prefix, SERVICES, Box::new(Accepting)).await
    }

    async fn start_with(etcd: &str, prefix: &str, services: &str, datapath: Box<dyn DataPath>) -> Node {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lb-store-node-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.json");
        let text = format!(
            "[daemon]\nstate_file = {:?}\n[cluster]\nnode = \"n{n}\"\netcd = [{etcd:?}]\netcd_prefix = {prefix:?}\n{services}",
            state.display().to_string()
        );
        std::fs::write(dir.join("lb.toml"), &text).unwrap();
        let cfg = Config::from_str(&text, "lb.toml").unwrap();
        let registry = Registry::load(&state, Instant::now()).unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let shared = Shared {
            telemetry: telemetry.clone(),
            token: Arc::new(RwLock::new(lb_config::Tokens::default())),
            ready: lb_control::ReadyFlag::default(),
        };
        let (reports_tx, reports) = mpsc::channel(64);
        let (commands_tx, commands) = mpsc::channel(64);
        let (_reloads_tx, reloads) = mpsc::channel(1);
        let (stop, stopped) = watch::channel(false);
        let controller = Controller::new(cfg, dir.join("lb.toml"), datapath, registry, reports_tx, shared);
        let store = Store::connect(&[etcd.to_string()], prefix, telemetry.clone()).await.unwrap();
        let (ejections_tx, ejections) = mpsc::unbounded_channel();
        let controller = controller.with_ejection_sink(ejections_tx);
        tokio::spawn(store.clone().share_ejections(ejections));
        tokio::spawn(async move {
            let _keep = _reloads_tx;
            controller.run(commands, reports, reloads, stopped).await;
        });
        let control = ControlHandle::new(commands_tx).with_store(store.clone());
        tokio::spawn(store_watch::run(store, control.clone(), stop.subscribe()));
        Node { control, telemetry, stop, dir }
    }

    /// The backend as this node serves it: configured or registered (a deregistered one
    /// drains for a while, as `retiring`, which does not count).
    async fn backend(&self, address: &str) -> Option<BackendView> {
        let services = self.control.services().await.ok()?;
        let backends = services.into_iter().find(|s| s.name == "web")?.backends;
        backends.into_iter().find(|b| b.address == address && b.sources.iter().any(|s| s != "retiring"))
    }

    fn store_up(&self) -> Option<bool> {
        self.telemetry.snapshot().store_up
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long until `check` holds, polled every 10 ms; panics after `limit`.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Duration {
    let t0 = Instant::now();
    while !check().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

fn addr(a: &str) -> std::net::SocketAddr {
    a.parse().unwrap()
}

const TTL: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_made_on_one_node_is_served_by_the_others_within_a_second() {
    if !test_etcd::available() {
        return;
    }
    let etcd = tokio::task::block_in_place(|| TestEtcd::start("converge"));
    let (a, b) = (Node::start(&etcd.url(), "/lb").await, Node::start(&etcd.url(), "/lb").await);
    until("both nodes read the store", Duration::from_secs(5), || async {
        a.store_up() == Some(true) && b.store_up() == Some(true)
    })
    .await;

    let t0 = Instant::now();
    let new = a.control.register("web".into(), addr("10.200.0.1:80"), 7, TTL).await.unwrap();
    assert!(new, "a new registration");
    assert!(a.backend("10.200.0.1:80").await.is_some(), "the node that took it serves it when it answers");
    until("node b serves the registration", Duration::from_secs(1), || async {
        b.backend("10.200.0.1:80").await.is_some_and(|v| v.weight == 7)
    })
    .await;
    println!("registration convergence: {:?} from the API call on node a to node b serving it", t0.elapsed());

    // A node that starts later reads it in its first full read.
    let c = Node::start(&etcd.url(), "/lb").await;
    until("a late node reads it", Duration::from_secs(5), || async { c.backend("10.200.0.1:80").await.is_some() })
        .await;

    // Deregistered through b: gone on a and c too.
    b.control.deregister("web".into(), addr("10.200.0.1:80")).await.unwrap();
    for node in [&a, &c] {
        until("the deregistration reaches every node", Duration::from_secs(1), || async {
            node.backend("10.200.0.1:80").await.is_none()
        })
        .await;
    }
    assert_eq!(
        a.control.deregister("web".into(), addr("10.200.0.1:80")).await,
        Err(ControlError::NotFound("10.200.0.1:80 has no registration in service web".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_is_not_renewed_removes_the_backend_on_every_node() {
    if !test_etcd::available() {
        return;
    }
    let etcd = tokio::task::block_in_place(|| TestEtcd::start("lease"));
    let (a, b) = (Node::start(&etcd.url(), "/lb").await, Node::start(&etcd.url(), "/lb").await);
    let ttl = Duration::from_secs(2);
    a.control.register("web".into(), addr("10.200.0.2:80"), 1, ttl).await.unwrap();
    until("node b serves it", Duration::from_secs(1), || async { b.backend("10.200.0.2:80").await.is_some() }).await;
    // Heartbeats sent to the other node keep the lease alive past its TTL...
    let t0 = Instant::now();
    while t0.elapsed() < ttl * 2 {
        b.control.heartbeat("web".into(), addr("10.200.0.2:80")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(a.backend("10.200.0.2:80").await.is_some(), "renewed through node b, so still on node a");
    assert!(b.backend("10.200.0.2:80").await.is_some());
    // ...and without them etcd ends it, on both.
    let stopped = Instant::now();
    for node in [&a, &b] {
        until("the lease runs out everywhere", Duration::from_secs(6), || async {
            node.backend("10.200.0.2:80").await.is_none()
        })
        .await;
    }
    println!("lease of {ttl:?} ended on both nodes {:?} after the last heartbeat", stopped.elapsed());
    let e = a.control.heartbeat("web".into(), addr("10.200.0.2:80")).await.unwrap_err();
    assert!(
        matches!(e, ControlError::NotFound(_)),
        "a heartbeat for a lease that ran out is a 404 (the agent re-registers): {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_state_set_on_one_node_shows_on_the_other() {
    if !test_etcd::available() {
        return;
    }
    let etcd = tokio::task::block_in_place(|| TestEtcd::start("state"));
    let (a, b) = (Node::start(&etcd.url(), "/lb").await, Node::start(&etcd.url(), "/lb").await);
    until("both read the store", Duration::from_secs(5), || async {
        a.store_up() == Some(true) && b.store_up() == Some(true)
    })
    .await;
    a.control.set_state("web".into(), addr("10.200.1.1:80"), AdminState::Drain).await.unwrap();
    until("node b drains the configured backend", Duration::from_secs(1), || async {
        b.backend("10.200.1.1:80").await.is_some_and(|v| v.state == "drain")
    })
    .await;
    // The same checks as without a store, before anything is written.
    let unknown = b.control.set_state("web".into(), addr("10.200.9.9:80"), AdminState::Maint).await.unwrap_err();
    assert!(matches!(unknown, ControlError::NotFound(_)), "{unknown:?}");
    let misfit = b.control.register("web".into(), addr("[fd00::1]:80"), 1, TTL).await.unwrap_err();
    assert!(matches!(misfit, ControlError::BadRequest(_)), "{misfit:?}");
    let nothing = b.control.register("nope".into(), addr("10.200.0.1:80"), 1, TTL).await.unwrap_err();
    assert!(matches!(nothing, ControlError::NotFound(_)), "{nothing:?}");
    b.control.set_state("web".into(), addr("10.200.1.1:80"), AdminState::Ready).await.unwrap();
    until("node a follows back", Duration::from_secs(1), || async {
        a.backend("10.200.1.1:80").await.is_some_and(|v| v.state == "ready")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_writes_are_refused_and_nothing_changes_then_the_nodes_converge_when_it_is_back() {
    if !test_etcd::available() {
        return;
    }
    let mut etcd = tokio::task::block_in_place(|| TestEtcd::start("outage"));
    let (a, b) = (Node::start(&etcd.url(), "/lb").await, Node::start(&etcd.url(), "/lb").await);
    a.control.register("web".into(), addr("10.200.0.3:80"), 1, Duration::from_secs(60)).await.unwrap();
    until("node b serves it", Duration::from_secs(1), || async { b.backend("10.200.0.3:80").await.is_some() }).await;

    tokio::task::block_in_place(|| etcd.stop());
    let t0 = Instant::now();
    let refused = a.control.register("web".into(), addr("10.200.0.4:80"), 1, TTL).await.unwrap_err();
    println!("write refused {:?} after etcd stopped: {refused}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(4), "refused within the store's deadline");
    match &refused {
        ControlError::Unavailable(m) => {
            assert!(m.contains("etcd is unreachable") && m.contains("nothing was changed"), "{m}")
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let state = b.control.set_state("web".into(), addr("10.200.0.3:80"), AdminState::Maint).await.unwrap_err();
    assert!(matches!(state, ControlError::Unavailable(_)), "{state:?}");
    assert!(a.backend("10.200.0.4:80").await.is_none(), "never applied locally what etcd does not hold");
    for node in [&a, &b] {
        let kept = node.backend("10.200.0.3:80").await.expect("the last known state is served");
        assert_eq!(kept.state, "ready");
    }
    until("both say etcd is unreachable", Duration::from_secs(10), || async {
        a.store_up() == Some(false) && b.store_up() == Some(false)
    })
    .await;
    assert_eq!(a.telemetry.snapshot().store_writes_refused_total, 1);
    assert_eq!(b.telemetry.snapshot().store_writes_refused_total, 1);

    tokio::task::block_in_place(|| etcd.resume());
    let t1 = Instant::now();
    let registered = loop {
        match b.control.register("web".into(), addr("10.200.0.4:80"), 2, TTL).await {
            Ok(new) => break new,
            Err(ControlError::Unavailable(_)) if t1.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd is back, yet: {e}"),
        }
    };
    assert!(registered);
    until("node a's watch resumes and converges", Duration::from_secs(10), || async {
        a.backend("10.200.0.4:80").await.is_some()
    })
    .await;
    println!("converged {:?} after etcd came back", t1.elapsed());
    until("both say etcd answers", Duration::from_secs(10), || async {
        a.store_up() == Some(true) && b.store_up() == Some(true)
    })
    .await;
    assert!(a.backend("10.200.0.3:80").await.is_some(), "the registration made before the outage is still there");
}

/// What etcd holds is applied with the config's rules: a registration this node cannot
/// take, or a key or value it cannot read, is logged and left out; the rest applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfits_written_to_etcd_by_hand_are_ignored_and_the_rest_applies() {
    if !test_etcd::available() {
        return;
    }
    let etcd = tokio::task::block_in_place(|| TestEtcd::start("misfit"));
    let a = Node::start(&etcd.url(), "/fleet").await;
    let mut client = etcd_client::Client::connect([etcd.url()], None).await.unwrap();
    let value = r#"{"weight":2,"ttl_ms":60000}"#;
    for (key, value) in [
        ("/fleet/registrations/nope/10.200.0.9:80", value),
        ("/fleet/registrations/web/[fd00::1]:80", value),
        ("/fleet/registrations/web/10.200.0.8:80", r#"{"weight":"heavy"}"#),
        ("/fleet/registrations/web/not-an-address", value),
        ("/fleet/states/web/10.200.1.1:80", r#"{"state":"sleepy"}"#),
        ("/fleet/registrations/web/10.200.0.7:80", value),
    ] {
        client.put(key, value, None).await.unwrap();
    }
    until("the valid registration applies", Duration::from_secs(1), || async {
        a.backend("10.200.0.7:80").await.is_some_and(|b| b.weight == 2)
    })
    .await;
    let services = a.control.services().await.unwrap();
    let addresses: Vec<&str> = services[0].backends.iter().map(|b| b.address.as_str()).collect();
    assert_eq!(addresses, ["10.200.1.1:80", "10.200.0.7:80"], "only the configured and the valid one");
    assert_eq!(a.backend("10.200.1.1:80").await.unwrap().state, "ready", "a state that does not parse is ignored");

    // The same, read in a node's first full read.
    let b = Node::start(&etcd.url(), "/fleet").await;
    until("a new node reads the valid one", Duration::from_secs(5), || async {
        b.backend("10.200.0.7:80").await.is_some()
    })
    .await;
    assert_eq!(b.control.services().await.unwrap()[0].backends.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ejected_by_one_nodes_breaker_leaves_rotation_on_every_node() {
    if !test_etcd::available() {
        return;
    }
    let etcd = tokio::task::block_in_place(|| TestEtcd::start("ejections"));
    let failing = lb_control::registry::BackendKey::new("web", addr("10.200.1.1:80"));
    let b = Node::start_with(&etcd.url(), "/lb", BREAKING, Box::new(Accepting)).await;
    until("node b reads the store", Duration::from_secs(5), || async { b.store_up() == Some(true) }).await;
    let circuit = |node: &Node, address: &'static str| {
        let control = node.control.clone();
        async move {
            let services = control.services().await.ok()?;
            let web = services.into_iter().find(|s| s.name == "web")?;
            web.backends.into_iter().find(|v| v.address == address).map(|v| v.circuit)
        }
    };
    assert_eq!(circuit(&b, "10.200.1.1:80").await.as_deref(), Some("closed"), "node b sees no failure itself");
    // Node a's flows to the backend fail: its breaker opens, and node b follows.
    let t0 = Instant::now();
    let a = Node::start_with(&etcd.url(), "/lb", BREAKING, Box::new(Failing(failing))).await;
    until("node a ejects the backend", Duration::from_secs(5), || async {
        circuit(&a, "10.200.1.1:80").await.as_deref() == Some("open")
    })
    .await;
    let ejected_on_a = t0.elapsed();
    until("node b ejects it too", Duration::from_secs(1), || async {
        circuit(&b, "10.200.1.1:80").await.as_deref() == Some("open")
    })
    .await;
    println!("ejection shared: open on node b {:?} after node a's breaker opened", t0.elapsed() - ejected_on_a);
    assert_eq!(circuit(&b, "10.200.1.2:80").await.as_deref(), Some("closed"), "only the failing backend");
    // The ejection ends on node b by its own clock (3 s), then b runs its own trial.
    until("node b's ejection ends", Duration::from_secs(6), || async {
        circuit(&b, "10.200.1.1:80").await.as_deref() == Some("half_open")
    })
    .await;
}
