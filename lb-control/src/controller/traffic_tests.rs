//! Weights set through the API and slow start, against the recording data path.
use super::*;

const WEB: &str = "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nalgorithm = \"weighted_round_robin\"\n\
    allow_registration_from = [\"127.0.0.0/8\"]\n\
    [[service.backend]]\naddress = \"127.0.0.1:1\"\nweight = 4\n\
    [[service.backend]]\naddress = \"127.0.0.2:1\"\n";

/// (weight, table weight, ramp) of `address` in `service`, as the data path last got it.
fn told(r: &Recorder, service: &str, address: &str) -> (u32, u32, Option<u32>) {
    let last = r.last.lock().unwrap();
    let s = last.as_ref().unwrap().services.iter().find(|s| s.name == service).unwrap();
    let b = s.backends.iter().find(|b| b.address.to_string() == address).unwrap();
    (b.weight, s.table_weight(b), b.ramp)
}

fn set_weight(c: &mut Controller, address: &str, weight: Option<u32>) -> Result<(), ControlError> {
    c.set_weight("web", address.parse().unwrap(), weight)
}

#[tokio::test]
async fn an_api_weight_wins_until_cleared_and_survives_a_restart() {
    let scratch = Scratch::new();
    scratch.write(WEB);
    let (mut c, r, _reports) = controller(&scratch);
    set_weight(&mut c, "127.0.0.1:1", Some(9)).unwrap();
    assert_eq!(told(&r, "web", "127.0.0.1:1").0, 9);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(scratch.state()).unwrap()).unwrap();
    assert_eq!(saved["weights"], serde_json::json!([{"service": "web", "address": "127.0.0.1:1", "weight": 9}]));
    assert_eq!(c.views()[0].backends[0].api_weight, Some(9));

    drop(c);
    let (mut c, r, _reports) = controller(&scratch);
    assert_eq!(told(&r, "web", "127.0.0.1:1").0, 9, "the state file keeps it");
    set_weight(&mut c, "127.0.0.1:1", None).unwrap();
    assert_eq!(told(&r, "web", "127.0.0.1:1").0, 4, "cleared: the config's again");
    assert_eq!(c.views()[0].backends[0].api_weight, None);

    let e = set_weight(&mut c, "127.0.0.9:1", Some(2)).unwrap_err();
    assert!(matches!(e, ControlError::NotFound(_)), "{e:?}");
}

#[tokio::test]
async fn a_weight_the_data_path_refuses_is_undone_and_a_leaving_registration_takes_its_weight() {
    let scratch = Scratch::new();
    scratch.write(WEB);
    let (mut c, r, _reports) = controller(&scratch);
    r.refuse.store(true, Ordering::SeqCst);
    assert!(matches!(set_weight(&mut c, "127.0.0.1:1", Some(0)), Err(ControlError::Unavailable(_))));
    r.refuse.store(false, Ordering::SeqCst);
    assert!(c.registry.weights.is_empty(), "refused: nothing kept");
    assert_eq!(c.views()[0].backends[0].weight, 4);

    c.register("web".into(), "127.0.0.3:1".parse().unwrap(), 2, Duration::from_secs(60)).unwrap();
    set_weight(&mut c, "127.0.0.3:1", Some(5)).unwrap();
    assert_eq!(told(&r, "web", "127.0.0.3:1").0, 5, "over the registration's weight");
    c.deregister(key("web", "127.0.0.3:1")).unwrap();
    assert!(c.registry.weights.is_empty(), "a backend no source names forgets its API weight");
}

fn ramping_web() -> String {
    WEB.replace(
        "algorithm = \"weighted_round_robin\"\n",
        "algorithm = \"weighted_round_robin\"\nslow_start = \"10s\"\n",
    )
}

/// Move every ramp's start back by `by`, as if that much time had passed.
fn age_ramps(c: &mut Controller, by: Duration) {
    for started in c.ramps.values_mut() {
        *started -= by;
    }
}

#[tokio::test]
async fn a_backend_back_up_ramps_its_share_over_the_window_and_others_do_not() {
    let scratch = Scratch::new();
    scratch.write(&ramping_web());
    let (mut c, r, _reports) = controller(&scratch);
    assert_eq!(told(&r, "web", "127.0.0.1:1"), (4, 4, None), "at start: full shares");
    let back = key("web", "127.0.0.2:1");
    report(&mut c, &back, false, 3);
    assert_eq!(c.desired.services[0].backends[1].health, Health::Down);
    report(&mut c, &back, true, 2);
    assert_eq!(told(&r, "web", "127.0.0.2:1"), (1, 10, Some(10)), "back up: 10% of its weight");
    assert_eq!(told(&r, "web", "127.0.0.1:1"), (4, 400, None), "the others in hundredths");
    assert_eq!(c.views()[0].backends[1].slow_start_percent, Some(10));

    age_ramps(&mut c, Duration::from_secs(5));
    c.tick();
    assert_eq!(told(&r, "web", "127.0.0.2:1"), (1, 50, Some(50)), "half way: half its weight");
    age_ramps(&mut c, Duration::from_secs(5));
    c.tick();
    assert_eq!(told(&r, "web", "127.0.0.2:1"), (1, 1, None), "the window is over");
    assert_eq!(told(&r, "web", "127.0.0.1:1"), (4, 4, None));
    assert!(!c.ramping(), "no more steps");
}

#[tokio::test]
async fn registrations_and_backends_back_from_drain_ramp_but_a_service_a_reload_adds_does_not() {
    let scratch = Scratch::new();
    scratch.write(&ramping_web());
    let (mut c, r, _reports) = controller(&scratch);
    c.register("web".into(), "127.0.0.3:1".parse().unwrap(), 2, Duration::from_secs(60)).unwrap();
    assert_eq!(told(&r, "web", "127.0.0.3:1"), (2, 20, Some(10)));
    c.set_state("web", "127.0.0.1:1".parse().unwrap(), lb_config::AdminState::Drain).unwrap();
    c.set_state("web", "127.0.0.1:1".parse().unwrap(), lb_config::AdminState::Ready).unwrap();
    assert_eq!(told(&r, "web", "127.0.0.1:1").2, Some(10), "back from drain");

    let with_api =
        format!("{}{}", ramping_web(), ramping_web().replace("web", "api").replace("10.0.0.100", "10.0.0.101"));
    scratch.write(&with_api);
    c.reload().unwrap();
    assert_eq!(told(&r, "api", "127.0.0.1:1"), (4, 4, None), "a new service starts at full shares");
}

#[tokio::test]
async fn without_slow_start_a_backend_back_up_takes_its_full_share_at_once() {
    let scratch = Scratch::new();
    scratch.write(WEB);
    let (mut c, r, _reports) = controller(&scratch);
    let back = key("web", "127.0.0.2:1");
    report(&mut c, &back, false, 3);
    report(&mut c, &back, true, 2);
    assert_eq!(told(&r, "web", "127.0.0.2:1"), (1, 1, None));
    assert!(!c.ramping());
}
