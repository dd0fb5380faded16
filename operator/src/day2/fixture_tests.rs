//! Every decision of `decide`, from YAML fixtures in `operator/tests/fixtures/day2/`: each file
//! holds an `input` (a `Day2Input`) and an `expect`ed subset of the `Decision` (objects: the keys
//! given must match; arrays: same length, element by element), plus optional `messageContains`.

use serde_json::Value;

use super::{decide, Day2Input};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fixture {
    input: Day2Input,
    expect: Value,
    #[serde(default)]
    message_contains: Vec<String>,
}

/// Whether `expected` is a subset of `actual` (see the module doc).
fn subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| subset(v, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| subset(x, y))
        }
        (e, a) => e == a,
    }
}

fn run(name: &str) {
    let path = format!(
        "{}/tests/fixtures/day2/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let fixture: Fixture =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let decision = decide(&fixture.input);
    let actual = serde_json::to_value(&decision).expect("decision serializes");
    assert!(
        subset(&fixture.expect, &actual),
        "{name}: expected\n{}\ngot\n{}",
        serde_json::to_string_pretty(&fixture.expect).unwrap_or_default(),
        serde_json::to_string_pretty(&actual).unwrap_or_default()
    );
    for m in &fixture.message_contains {
        assert!(
            decision.message.contains(m.as_str()),
            "{name}: message {:?} lacks {m:?}",
            decision.message
        );
    }
    // The state survives status: the same input with the state read back decides the same.
    let json = serde_json::to_string(&fixture.input.state).expect("state serializes");
    let mut again = fixture.input.clone();
    again.state = serde_json::from_str(&json).expect("state parses");
    assert_eq!(
        decide(&again),
        decision,
        "{name}: decision depends only on its input"
    );
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(&stringify!($name).replace('_', "-"));
            }
        )*
    };
}

fixtures!(
    idle,
    first_pass_adopts_brokers_still_registering,
    commission_abandoned_when_the_new_brokers_leave,
    moves_in_flight_wait,
    decommission_refused_when_rf_exceeds_remaining_brokers,
    decommission_cordons_leaving_brokers_first,
    decommission_drains_in_batches,
    decommission_reports_bytes_moved_and_eta,
    decommission_eta_never_beats_the_throttle,
    decommission_paused_submits_nothing,
    decommission_waits_for_moved_partitions_in_sync,
    decommission_waits_for_empty_log_dirs,
    decommission_waits_for_an_unanswered_broker,
    decommission_shrinks_when_drained,
    decommission_waits_for_pods_to_stop,
    decommission_unregisters_stopped_brokers,
    decommission_done,
    decommission_cancelled_uncordons,
    commission_waits_for_every_broker,
    commission_balances_onto_new_brokers,
    commission_done_when_balanced,
    commission_elects_preferred_leaders,
    restart_controllers_first,
    restart_active_controller_last,
    restart_controller_waits_for_a_quorum_majority,
    restart_waits_for_every_pod_ready,
    restart_not_ready_pod_first,
    restart_gate_blocks_below_min_isr,
    restart_gate_keeps_blocked_since,
    restart_skips_topics_with_rf_not_above_min_isr,
    restart_waits_until_back_in_every_isr,
    restart_waits_while_fenced,
    restart_next_after_post_gate,
    restart_elects_preferred_leaders_back,
    restart_waits_for_preferred_leaders,
    restart_reissued_when_old_pod_still_runs,
    first_pass_adopts_registered_brokers,
    throttle_cleared_when_moves_finish,
    decommission_refused_for_quorum_voters,
);

fn input_of(name: &str) -> Day2Input {
    let path = format!(
        "{}/tests/fixtures/day2/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let fixture: Fixture = serde_yaml::from_str(&text).expect("fixture parses");
    fixture.input
}

fn moves_of(name: &str) -> Vec<tributary_planner::Move> {
    match decide(&input_of(name)).action {
        super::Day2Action::Reassign { moves, .. } => moves,
        other => panic!("{name}: not a reassignment: {other:?}"),
    }
}

#[test]
fn drain_moves_never_target_the_leaving_broker_and_keep_the_replication_factor() {
    let moves = moves_of("decommission-drains-in-batches");
    assert!(!moves.is_empty());
    for m in moves {
        assert!(m.current.contains(&103), "{m:?}");
        assert!(!m.target.contains(&103), "{m:?}");
        assert_eq!(m.target.len(), m.current.len(), "{m:?}");
    }
}

#[test]
fn balance_moves_only_add_the_new_broker() {
    let moves = moves_of("commission-balances-onto-new-brokers");
    assert!(!moves.is_empty());
    for m in moves.iter().filter(|m| m.bytes() > 0) {
        assert_eq!(m.added(), vec![103], "{m:?}");
    }
}

#[test]
fn a_step_asks_for_its_own_preferred_election_whatever_an_earlier_step_asked() {
    // A flag left by another step (a commissioning replaced by a decommission, say) must not
    // make the next restart skip its election and wait for leaders nobody asked for.
    let mut input = input_of("restart-controllers-first");
    input.state.leaders_elected = true;
    assert!(!decide(&input).state.leaders_elected);
    let mut input = input_of("commission-balances-onto-new-brokers");
    input.state.leaders_elected = true;
    input.state.operation = None;
    assert!(!decide(&input).state.leaders_elected);
}
