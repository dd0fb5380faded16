use super::*;

const DELAY: Duration = Duration::from_millis(3000);
const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn group() -> Group {
    Group::new(
        "g",
        GroupTimeouts {
            initial_rebalance_delay: DELAY,
        },
        0,
    )
}

fn req(member_id: &str, protocols: &[(&str, &str)]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(n, m)| ((*n).to_owned(), Bytes::from((*m).to_owned())))
            .collect(),
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn range() -> Vec<(&'static str, &'static str)> {
    vec![("range", "sub-a")]
}

fn wait_id<T: std::fmt::Debug>(r: &Reply<T>) -> String {
    match r {
        Reply::Wait { member_id } => member_id.clone(),
        other => panic!("expected to wait, got {other:?}"),
    }
}

fn joins(effects: &[Effect]) -> BTreeMap<String, JoinResponse> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join(id, r) => Some((id.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> BTreeMap<String, SyncResponse> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync(id, r) => Some((id.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

fn sync_req(id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        member_id: id.to_owned(),
        instance_id: None,
        generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::from((*a).to_owned())))
            .collect(),
    }
}

/// Two dynamic members joined, synced and Stable at generation 1; returns (leader, follower).
fn stable_pair(g: &mut Group, t0: Instant) -> (String, String) {
    let (r1, e1) = g.join(req("", &range()), t0, 0);
    assert!(e1.is_empty());
    let a = wait_id(&r1);
    let (r2, _) = g.join(req("", &range()), t0, 0);
    let b = wait_id(&r2);
    let effects = settle(g, t0);
    let answered = joins(&effects);
    assert_eq!(answered.len(), 2);
    let leader = answered[&a].leader.clone();
    let follower = if leader == a { b } else { a };
    let (r, _) = g.sync(sync_req(&follower, 1, &[]), t0 + DELAY * 2, 0);
    wait_id(&r);
    let (r, effects) = g.sync(
        sync_req(&leader, 1, &[(&leader, "LA"), (&follower, "FA")]),
        t0 + DELAY * 2,
        0,
    );
    wait_id(&r);
    assert!(effects.contains(&Effect::PersistGroup));
    assert_eq!(g.state, GroupState::Stable);
    (leader, follower)
}

/// Ends the initial delay of a new group that got several members at once (it is extended
/// once because members kept arriving) and returns the effects.
fn settle(g: &mut Group, t0: Instant) -> Vec<Effect> {
    let mut effects = g.tick(t0 + DELAY, 0);
    effects.extend(g.tick(t0 + DELAY * 2, 0));
    effects
}

#[test]
fn first_join_waits_for_the_initial_delay_then_completes() {
    let mut g = group();
    let t0 = Instant::now();
    let (r, effects) = g.join(req("", &range()), t0, 0);
    let id = wait_id(&r);
    assert!(effects.is_empty());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(g.tick(t0 + DELAY - Duration::from_millis(1), 0).is_empty());
    let effects = g.tick(t0 + DELAY, 0);
    let resp = &joins(&effects)[&id];
    assert_eq!(resp.error, None);
    assert_eq!(resp.generation, 1);
    assert_eq!(resp.leader, id);
    assert_eq!(resp.protocol_name.as_deref(), Some("range"));
    assert_eq!(resp.members.len(), 1);
    assert_eq!(resp.members[0].2, Bytes::from("sub-a"));
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn initial_delay_extends_while_members_keep_arriving() {
    let mut g = group();
    let t0 = Instant::now();
    g.join(req("", &range()), t0, 0);
    g.join(req("", &range()), t0 + Duration::from_millis(2000), 0);
    // A member arrived during the delay: extended by another delay.
    assert!(joins(&g.tick(t0 + DELAY, 0)).is_empty());
    let effects = g.tick(t0 + DELAY * 2, 0);
    assert_eq!(joins(&effects).len(), 2);
}

#[test]
fn v4_dynamic_member_must_rejoin_with_the_given_member_id() {
    let mut g = group();
    let t0 = Instant::now();
    let mut r = req("", &range());
    r.require_known_member_id = true;
    let (reply, _) = g.join(r.clone(), t0, 0);
    let Reply::Now(resp) = reply else {
        panic!("expected an immediate answer")
    };
    assert_eq!(resp.error, Some(ResponseError::MemberIdRequired));
    assert!(resp.member_id.starts_with("c-"));
    assert_eq!(g.state, GroupState::Empty);
    r.member_id = resp.member_id.clone();
    let (reply, _) = g.join(r, t0, 0);
    assert_eq!(wait_id(&reply), resp.member_id);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn the_leaders_assignment_is_passed_through_untouched() {
    let mut g = group();
    let t0 = Instant::now();
    let (leader, follower) = stable_pair(&mut g, t0);
    assert_eq!(g.members[&leader].assignment, Bytes::from("LA"));
    assert_eq!(g.members[&follower].assignment, Bytes::from("FA"));
    // A later sync in Stable returns the stored assignment at once.
    let (r, _) = g.sync(sync_req(&follower, 1, &[]), t0 + DELAY * 2, 0);
    assert_eq!(
        r,
        Reply::Now(SyncResponse {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from("FA"),
        })
    );
}

#[test]
fn sync_answers_wait_for_the_leader() {
    let mut g = group();
    let t0 = Instant::now();
    g.join(req("", &range()), t0, 0);
    g.join(req("", &range()), t0, 0);
    let answered = joins(&settle(&mut g, t0));
    let leader = answered.values().next().expect("answers").leader.clone();
    let follower = answered
        .keys()
        .find(|k| **k != leader)
        .expect("two")
        .clone();
    let (r, effects) = g.sync(sync_req(&follower, 1, &[]), t0 + DELAY * 2, 0);
    wait_id(&r);
    assert!(effects.is_empty());
    let (_, effects) = g.sync(
        sync_req(&leader, 1, &[(&follower, "F"), (&leader, "L")]),
        t0 + DELAY * 2,
        0,
    );
    let s = syncs(&effects);
    assert_eq!(s[&follower].assignment, Bytes::from("F"));
    assert_eq!(s[&leader].assignment, Bytes::from("L"));
}

#[test]
fn heartbeats_report_rebalances_and_stale_generations() {
    let mut g = group();
    let t0 = Instant::now();
    let (leader, follower) = stable_pair(&mut g, t0);
    assert_eq!(g.heartbeat(&follower, None, 1, t0), Ok(()));
    assert_eq!(
        g.heartbeat(&follower, None, 0, t0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("nobody", None, 1, t0),
        Err(ResponseError::UnknownMemberId)
    );
    // A third member joins: the others learn of the rebalance through heartbeats.
    g.join(req("", &range()), t0, 0);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader, None, 1, t0),
        Err(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut g = group();
    let t0 = Instant::now();
    let (leader, follower) = stable_pair(&mut g, t0);
    let t1 = t0 + DELAY * 2;
    let (r, _) = g.join(req("", &range()), t1, 0);
    let newcomer = wait_id(&r);
    let (r, _) = g.join(req(&leader, &range()), t1, 0);
    wait_id(&r);
    // The follower keeps heartbeating but never rejoins.
    for s in 1..30 {
        let _ = g.heartbeat(&follower, None, 1, t1 + Duration::from_secs(s));
        assert!(joins(&g.tick(t1 + Duration::from_secs(s), 0)).is_empty());
    }
    let effects = g.tick(t1 + REBALANCE, 0);
    let answered = joins(&effects);
    assert_eq!(answered.len(), 2);
    assert!(!g.members.contains_key(&follower));
    assert_eq!(g.generation, 2);
    assert_eq!(answered[&newcomer].generation, 2);
    assert_eq!(answered[&leader].leader, leader, "the leader is kept");
    assert_eq!(answered[&leader].members.len(), 2);
}

#[test]
fn session_expiry_removes_the_member_and_rebalances() {
    let mut g = group();
    let t0 = Instant::now();
    let (leader, follower) = stable_pair(&mut g, t0);
    let t1 = t0 + DELAY * 2;
    let half = t1 + SESSION / 2;
    assert_eq!(g.heartbeat(&leader, None, 1, half), Ok(()));
    assert!(g.tick(half, 0).is_empty());
    let effects = g.tick(t1 + SESSION, 0);
    assert!(effects.is_empty());
    assert!(!g.members.contains_key(&follower));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // The leader rejoins: the rebalance completes with it alone.
    let (r, effects) = g.join(req(&leader, &range()), t1 + SESSION, 0);
    wait_id(&r);
    let answered = joins(&effects);
    assert_eq!(answered[&leader].generation, 2);
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn leaving_rebalances_and_the_last_member_leaves_an_empty_group() {
    let mut g = group();
    let t0 = Instant::now();
    let (leader, follower) = stable_pair(&mut g, t0);
    let effects = g.leave(&follower, None, t0, 0).expect("leave");
    assert!(joins(&effects).is_empty());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.leave("nobody", None, t0, 0),
        Err(ResponseError::UnknownMemberId)
    );
    let effects = g.leave(&leader, None, t0, 5).expect("leave");
    assert!(effects.contains(&Effect::PersistGroup));
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.state_timestamp_ms, 5);
    assert_eq!(g.generation, 2);
}

#[test]
fn a_changed_subscription_triggers_a_rebalance() {
    let mut g = group();
    let t0 = Instant::now();
    let (_leader, follower) = stable_pair(&mut g, t0);
    // Same subscription: answered at once, no rebalance.
    let (r, _) = g.join(req(&follower, &range()), t0, 0);
    assert!(matches!(
        r,
        Reply::Now(JoinResponse {
            error: None,
            generation: 1,
            ..
        })
    ));
    assert_eq!(g.state, GroupState::Stable);
    let (r, _) = g.join(req(&follower, &[("range", "sub-b")]), t0, 0);
    wait_id(&r);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn protocol_is_chosen_among_those_all_members_support() {
    let mut g = group();
    let t0 = Instant::now();
    g.join(req("", &[("range", "x"), ("roundrobin", "y")]), t0, 0);
    g.join(req("", &[("roundrobin", "y"), ("range", "x")]), t0, 0);
    g.join(req("", &[("roundrobin", "y")]), t0, 0);
    assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
    let (r, _) = g.join(req("", &[("cooperative-sticky", "z")]), t0, 0);
    assert!(matches!(
        r,
        Reply::Now(JoinResponse {
            error: Some(ResponseError::InconsistentGroupProtocol),
            ..
        })
    ));
}

fn static_req(instance: &str) -> JoinRequest {
    let mut r = req("", &range());
    r.instance_id = Some(instance.to_owned());
    r
}

#[test]
fn a_restarting_static_member_gets_its_assignment_back_without_a_rebalance() {
    let mut g = group();
    let t0 = Instant::now();
    let (ra, _) = g.join(static_req("i-1"), t0, 0);
    let a = wait_id(&ra);
    let (rb, _) = g.join(static_req("i-2"), t0, 0);
    let b = wait_id(&rb);
    let answered = joins(&settle(&mut g, t0));
    let leader = answered[&a].leader.clone();
    let (follower, finst) = if leader == a { (b, "i-2") } else { (a, "i-1") };
    let (_, effects) = g.sync(
        sync_req(&leader, 1, &[(&leader, "L"), (&follower, "F")]),
        t0,
        0,
    );
    assert_eq!(syncs(&effects).len(), 1);
    assert_eq!(g.state, GroupState::Stable);
    // The follower restarts: unknown member id, same instance id.
    let (r, effects) = g.join(static_req(finst), t0 + Duration::from_secs(1), 0);
    let Reply::Now(resp) = r else {
        panic!("expected an immediate answer")
    };
    assert_eq!(resp.error, None);
    assert_eq!(resp.generation, 1);
    assert_ne!(resp.member_id, follower);
    assert!(effects.contains(&Effect::PersistGroup));
    assert_eq!(g.state, GroupState::Stable);
    let mut s = sync_req(&resp.member_id, 1, &[]);
    s.instance_id = Some(finst.to_owned());
    let (r, _) = g.sync(s, t0, 0);
    let Reply::Now(sr) = r else {
        panic!("expected the stored assignment")
    };
    assert_eq!(sr.assignment, Bytes::from("F"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&follower, Some(finst), 1, t0),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.leave(&follower, Some(finst), t0, 0),
        Err(ResponseError::FencedInstanceId)
    );
}

#[test]
fn a_static_member_that_does_not_return_expires_after_its_session() {
    let mut g = group();
    let t0 = Instant::now();
    let (ra, _) = g.join(static_req("i-1"), t0, 0);
    let a = wait_id(&ra);
    settle(&mut g, t0);
    g.sync(sync_req(&a, 1, &[(&a, "A")]), t0 + DELAY * 2, 0);
    assert_eq!(g.state, GroupState::Stable);
    let effects = g.tick(t0 + DELAY * 2 + SESSION, 7);
    assert!(effects.contains(&Effect::PersistGroup));
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.static_members.is_empty());
}

#[test]
fn a_leader_that_never_syncs_loses_the_members_that_did_not_sync() {
    let mut g = group();
    let t0 = Instant::now();
    g.join(req("", &range()), t0, 0);
    g.join(req("", &range()), t0, 0);
    let answered = joins(&settle(&mut g, t0));
    let leader = answered.values().next().expect("answers").leader.clone();
    let follower = answered
        .keys()
        .find(|k| **k != leader)
        .expect("two")
        .clone();
    g.sync(sync_req(&follower, 1, &[]), t0 + DELAY * 2, 0);
    let effects = g.tick(t0 + DELAY * 2 + REBALANCE, 0);
    assert!(!g.members.contains_key(&leader));
    assert_eq!(
        syncs(&effects)[&follower].error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn restored_groups_are_stable_with_their_members() {
    let t0 = Instant::now();
    let m = Group::stored_member(
        "m-1".into(),
        Some("i-1".into()),
        "c".into(),
        "h".into(),
        SESSION,
        REBALANCE,
        ("range".into(), Bytes::from("s")),
        Bytes::from("a"),
    );
    let mut g = group();
    g.generation = 4;
    let g = g.restore(vec![m], t0);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.static_members["i-1"], "m-1");
    assert_eq!(group().restore(vec![], t0).state, GroupState::Empty);
}
