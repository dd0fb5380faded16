//! The day-2 planner driven over many passes against the fake cluster's partitions: each pass
//! decides from what the fake reports, carries the action out on the fake (the reconciler does
//! that for real in `cluster::operate`; see `cluster_day2.rs` for the reconcile passes), lets
//! time advance one step, and checks
//! what users rely on: no partition below min.insync.replicas because of the operator, one pod
//! down at a time, a StatefulSet shrunk only once its leaving brokers are empty and every moved
//! partition is in sync, and the whole operation finished. The state goes through JSON between
//! passes, as it would through the resource's status.

use operator::admin::fake::FakeAdmin;
use operator::admin::TopicPartition;
use operator::day2::{
    decide, Day2Action, Day2Input, Day2State, Decision, DesiredCluster, ObservedKube, PodView,
};

const NOW: &str = "2026-12-04T12:00:00Z";

struct Sim {
    fake: FakeAdmin,
    spec: DesiredCluster,
    broker_replicas: i32,
    pods: Vec<PodView>,
    state: Day2State,
    /// Pods deleted last pass: they come back (ready, new config) this pass.
    restarting: Vec<String>,
    actions: Vec<Day2Action>,
}

impl Sim {
    fn new(controllers: i32, brokers: &[i32], min_isr: usize) -> Sim {
        let fake = FakeAdmin::with_brokers(brokers);
        fake.lock().controller = Some(1);
        let mut pods: Vec<PodView> = (0..controllers)
            .map(|i| PodView {
                name: format!("demo-controller-{i}"),
                node_id: i,
                broker: false,
                controller: true,
                ready: true,
                up_to_date: true,
            })
            .collect();
        for (i, id) in brokers.iter().enumerate() {
            pods.push(broker_pod(i, *id));
        }
        Sim {
            fake,
            spec: DesiredCluster {
                brokers: brokers.to_vec(),
                min_insync_replicas: min_isr,
                batch_size: 3,
                throttle_bytes_per_second: Some(10_000_000),
                paused: false,
                max_unavailable_per_rack: 1,
            },
            broker_replicas: i32::try_from(brokers.len()).expect("few"),
            pods,
            state: Day2State {
                known_brokers: brokers.to_vec(),
                ..Day2State::default()
            },
            restarting: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn input(&self) -> Day2Input {
        Day2Input {
            spec: self.spec.clone(),
            kube: ObservedKube {
                broker_replicas: self.broker_replicas,
                pods: self.pods.clone(),
            },
            kafka: self.fake.lock().kafka_view(),
            state: self.state.clone(),
            now: NOW.to_owned(),
        }
    }

    /// One pass: the kubelet brings back restarted pods, the planner decides, the action is
    /// carried out, time advances.
    fn pass(&mut self) -> Decision {
        for name in std::mem::take(&mut self.restarting) {
            let Some(p) = self.pods.iter_mut().find(|p| p.name == name) else {
                continue;
            };
            p.ready = true;
            p.up_to_date = true;
            if p.broker {
                self.fake.lock().start_broker(p.node_id);
            }
        }
        let decision = decide(&self.input());
        let json = serde_json::to_string(&decision.state).expect("state serializes");
        self.state = serde_json::from_str(&json).expect("state parses");
        self.apply(&decision.action);
        self.actions.push(decision.action.clone());
        self.fake.lock().tick();
        decision
    }

    fn apply(&mut self, action: &Day2Action) {
        let mut s = self.fake.lock();
        match action {
            Day2Action::None | Day2Action::Wait | Day2Action::Refuse { .. } => {}
            Day2Action::ClearThrottle => s.calls.push("clear throttle".to_owned()),
            Day2Action::Cordon { brokers } => s.cordoned.extend(brokers.iter().copied()),
            Day2Action::Uncordon { brokers } => s.cordoned.retain(|b| !brokers.contains(b)),
            Day2Action::Reassign { moves, .. } => s.reassign(moves).expect("moves accepted"),
            Day2Action::ScaleBrokers { replicas } => {
                let hosting = s.hosting_brokers();
                for p in self.pods.iter().filter(|p| p.broker) {
                    let ordinal: i32 = p
                        .name
                        .rsplit('-')
                        .next()
                        .and_then(|o| o.parse().ok())
                        .expect("ordinal");
                    if ordinal >= *replicas {
                        assert!(
                            !hosting.contains(&p.node_id),
                            "shrunk while {} hosts replicas",
                            p.node_id
                        );
                        s.stop_broker(p.node_id);
                    }
                }
                assert!(
                    s.kafka_view().partitions.iter().all(|p| p.fully_in_sync()),
                    "shrunk while a partition is not fully in sync"
                );
                self.broker_replicas = *replicas;
                self.pods.retain(|p| {
                    !p.broker
                        || p.name
                            .rsplit('-')
                            .next()
                            .and_then(|o| o.parse::<i32>().ok())
                            < Some(*replicas)
                });
            }
            Day2Action::Unregister { brokers } => {
                for b in brokers {
                    s.unregister(*b).expect("an empty broker unregisters");
                }
            }
            Day2Action::RestartPod { pod, with } => {
                for pod in std::iter::once(pod).chain(with) {
                    let p = self
                        .pods
                        .iter_mut()
                        .find(|p| p.name == *pod)
                        .expect("pod exists");
                    p.ready = false;
                    if p.broker {
                        s.stop_broker(p.node_id);
                    }
                    self.restarting.push(pod.clone());
                }
            }
            Day2Action::ElectLeaders { partitions } => {
                let partitions: Vec<TopicPartition> = partitions
                    .iter()
                    .map(|name| name.parse().expect("topic-partition"))
                    .collect();
                s.elect_preferred(Some(&partitions))
                    .expect("preferred election");
            }
        }
    }

    /// Runs passes until the planner has nothing to do; checks min ISR after each.
    fn run(&mut self, max_passes: usize) -> usize {
        for pass in 0..max_passes {
            let d = self.pass();
            let below = self
                .fake
                .lock()
                .below_min_isr(self.spec.min_insync_replicas);
            assert!(
                below.is_empty(),
                "pass {pass}: below min ISR {below:?} after {:?}",
                d.action
            );
            let down: Vec<&PodView> = self.pods.iter().filter(|p| !p.ready).collect();
            let racks: std::collections::BTreeSet<Option<String>> = down
                .iter()
                .map(|p| self.fake.lock().racks.get(&p.node_id).cloned())
                .collect();
            assert!(
                down.len() <= 1
                    || (down.len() <= self.spec.max_unavailable_per_rack
                        && racks.len() == 1
                        && !racks.contains(&None)),
                "pass {pass}: pods down at once: {down:?}"
            );
            if d.action == Day2Action::None {
                return pass;
            }
        }
        panic!(
            "not finished after {max_passes} passes: {:?}",
            self.actions.last()
        );
    }
}

fn broker_pod(ordinal: usize, id: i32) -> PodView {
    PodView {
        name: format!("demo-broker-{ordinal}"),
        node_id: id,
        broker: true,
        controller: false,
        ready: true,
        up_to_date: true,
    }
}

/// 12 partitions of RF 3 spread over `brokers`, round robin.
fn rf3_topic(sim: &Sim, brokers: &[i32]) {
    let n = brokers.len();
    let assignments: Vec<Vec<i32>> = (0..12)
        .map(|p| (0..3).map(|r| brokers[(p + r) % n]).collect())
        .collect();
    sim.fake
        .lock()
        .add_partitions("orders", &assignments, 1_000_000);
}

#[test]
fn decommissioning_drains_then_shrinks_then_unregisters() {
    let mut sim = Sim::new(3, &[100, 101, 102, 103], 2);
    rf3_topic(&sim, &[100, 101, 102, 103]);
    sim.spec.brokers = vec![100, 101, 102];
    let passes = sim.run(60);
    let kinds: Vec<&str> = sim
        .actions
        .iter()
        .map(|a| match a {
            Day2Action::Cordon { .. } => "cordon",
            Day2Action::Reassign { .. } => "reassign",
            Day2Action::ScaleBrokers { .. } => "scale",
            Day2Action::Unregister { .. } => "unregister",
            Day2Action::Wait => "wait",
            Day2Action::ClearThrottle => "clearThrottle",
            Day2Action::None => "none",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"cordon"));
    let scale = kinds.iter().position(|k| *k == "scale").expect("shrunk");
    let unregister = kinds
        .iter()
        .position(|k| *k == "unregister")
        .expect("unregistered");
    assert!(kinds[..scale].contains(&"reassign"));
    let cleared = kinds
        .iter()
        .position(|k| *k == "clearThrottle")
        .expect("throttle removed");
    let last_move = kinds.iter().rposition(|k| *k == "reassign").expect("moved");
    assert!(last_move < cleared && cleared < scale, "{kinds:?}");
    assert!(scale < unregister, "{kinds:?}");
    let s = sim.fake.lock();
    assert_eq!(s.brokers, [100, 101, 102]);
    assert!(!s.hosting_brokers().contains(&103));
    assert_eq!(sim.state.known_brokers, [100, 101, 102]);
    assert!(sim.state.operation.is_none());
    assert!(passes < 60);
}

#[test]
fn decommissioning_below_a_topics_replication_factor_is_refused_every_pass() {
    let mut sim = Sim::new(3, &[100, 101, 102], 2);
    rf3_topic(&sim, &[100, 101, 102]);
    sim.spec.brokers = vec![100, 101];
    for _ in 0..3 {
        let d = sim.pass();
        assert!(matches!(d.action, Day2Action::Refuse { .. }), "{d:?}");
        assert!(d.message.contains("orders (RF 3)"), "{}", d.message);
    }
    assert!(sim.fake.lock().cordoned.is_empty(), "nothing was started");
}

#[test]
fn commissioning_balances_new_brokers_in_and_finishes() {
    let mut sim = Sim::new(3, &[100, 101, 102, 103, 104], 2);
    rf3_topic(&sim, &[100, 101, 102]);
    sim.state.known_brokers = vec![100, 101, 102];
    sim.run(60);
    let view = sim.fake.lock().kafka_view();
    let per_broker = |id: i32| {
        view.partitions
            .iter()
            .filter(|p| p.replicas.contains(&id))
            .count()
    };
    // 36 replicas over 5 brokers: 7 or 8 each
    for id in [100, 101, 102, 103, 104] {
        let n = per_broker(id);
        assert!((7..=8).contains(&n), "broker {id} holds {n}");
    }
    assert_eq!(sim.state.known_brokers, [100, 101, 102, 103, 104]);
    assert!(sim
        .actions
        .iter()
        .any(|a| matches!(a, Day2Action::Reassign { .. })));
}

#[test]
fn rolling_restart_goes_one_pod_at_a_time_controllers_first_active_last() {
    let mut sim = Sim::new(3, &[100, 101, 102], 2);
    rf3_topic(&sim, &[100, 101, 102]);
    for p in &mut sim.pods {
        p.up_to_date = false;
    }
    sim.run(60);
    let restarted: Vec<String> = sim
        .actions
        .iter()
        .filter_map(|a| match a {
            Day2Action::RestartPod { pod, with } => {
                assert!(with.is_empty(), "{with:?}");
                Some(pod.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        restarted,
        [
            "demo-controller-0",
            "demo-controller-2",
            "demo-controller-1",
            "demo-broker-0",
            "demo-broker-1",
            "demo-broker-2"
        ]
    );
    assert!(sim.pods.iter().all(|p| p.up_to_date && p.ready));
    assert!(sim.state.operation.is_none());
}

#[test]
fn a_racks_brokers_restart_together_when_the_gate_holds_for_the_set() {
    // racks a, b, c, a, b, c; rack-aware placement: each partition has one replica per rack
    let brokers = [100, 101, 102, 103, 104, 105];
    let mut sim = Sim::new(3, &brokers, 2);
    sim.spec.max_unavailable_per_rack = 2;
    for (i, id) in brokers.iter().enumerate() {
        let rack = ["a", "b", "c"][i % 3];
        sim.fake.lock().racks.insert(*id, rack.to_owned());
    }
    let assignments: Vec<Vec<i32>> = (0..12)
        .map(|p: usize| {
            let pick = |rack: usize| brokers[rack + 3 * ((p / 3) % 2)];
            let racks = [p % 3, (p + 1) % 3, (p + 2) % 3];
            racks.iter().map(|r| pick(*r)).collect()
        })
        .collect();
    sim.fake
        .lock()
        .add_partitions("orders", &assignments, 1_000);
    // one partition with two replicas in rack a (a manual assignment): 100 and 103 cannot go
    // together while it has only those two and 101 in sync
    sim.fake
        .lock()
        .add_partitions("manual", &[vec![100, 103, 101]], 1_000);
    for p in &mut sim.pods {
        p.up_to_date = false;
    }
    sim.run(80);
    let restarted: Vec<Vec<String>> = sim
        .actions
        .iter()
        .filter_map(|a| match a {
            Day2Action::RestartPod { pod, with } => {
                Some(std::iter::once(pod).chain(with).cloned().collect())
            }
            _ => None,
        })
        .collect();
    let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(
        restarted,
        [
            names(&["demo-controller-0"]),
            names(&["demo-controller-2"]),
            names(&["demo-controller-1"]),
            // 103 would take "manual" below min ISR together with 100: 100 goes alone
            names(&["demo-broker-0"]),
            names(&["demo-broker-1", "demo-broker-4"]),
            names(&["demo-broker-2", "demo-broker-5"]),
            names(&["demo-broker-3"]),
        ]
    );
    assert!(sim.pods.iter().all(|p| p.up_to_date && p.ready));
}

#[test]
fn rolling_restart_waits_while_a_follower_is_out_of_sync() {
    let mut sim = Sim::new(0, &[100, 101, 102], 2);
    rf3_topic(&sim, &[100, 101, 102]);
    for p in sim.pods.iter_mut().filter(|p| p.node_id == 100) {
        p.up_to_date = false;
    }
    // broker 101 falls out of every ISR (its pod stays ready, as a slow follower would)
    sim.fake.lock().stop_broker(101);
    for _ in 0..3 {
        let d = decide(&sim.input());
        assert_eq!(d.action, Day2Action::Wait, "{d:?}");
        assert!(
            d.message.contains("below min.insync.replicas 2"),
            "{}",
            d.message
        );
        sim.state = d.state;
    }
    sim.fake.lock().start_broker(101);
    sim.fake.lock().tick();
    let d = decide(&sim.input());
    assert_eq!(
        d.action,
        Day2Action::RestartPod {
            pod: "demo-broker-0".into(),
            with: Vec::new(),
        }
    );
}

#[test]
fn a_broker_failing_mid_drain_pauses_the_decommission_which_resumes_when_it_returns() {
    let mut sim = Sim::new(3, &[100, 101, 102, 103], 2);
    rf3_topic(&sim, &[100, 101, 102, 103]);
    sim.spec.brokers = vec![100, 101, 102];
    sim.pass(); // cordon
    sim.pass(); // first batch
                // broker 101 stops: with it fenced, a partition on 103, 100 and 102 has nowhere to go
    sim.fake.lock().stop_broker(101);
    for pass in 0..3 {
        let d = sim.pass();
        assert!(
            !matches!(d.action, Day2Action::ScaleBrokers { .. }),
            "pass {pass}: shrunk while 101 is down"
        );
        assert_eq!(
            d.operation,
            operator::day2::ReportedOperation::Draining,
            "{d:?}"
        );
        assert!(
            sim.state.operation.is_some(),
            "pass {pass}: the operation is kept"
        );
    }
    assert!(
        sim.actions
            .iter()
            .any(|a| matches!(a, Day2Action::Refuse { reason } if reason == "DrainImpossible")),
        "{:?}",
        sim.actions
    );
    sim.fake.lock().start_broker(101);
    sim.run(60);
    let s = sim.fake.lock();
    assert_eq!(s.brokers, [100, 101, 102]);
    assert!(s.kafka_view().partitions.iter().all(|p| p.fully_in_sync()));
}
