//! The Lease leader-election loop against the in-memory API server, with paused time and a lease
//! clock that follows it: acquire a free lease, renew it, follow a live lease of another
//! identity, take over an expired one, lose a write race, and step down when renewals fail,
//! hang, or find another holder; release on shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::coll;
use common::fake_api::FakeApi;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use operator::runtime::leader::{
    Clock, LeaderElector, LostLeadership, LEASE_DURATION, RENEW_DEADLINE,
};
use serde_json::{json, Value};
use tokio::time::Instant;

const NS: &str = "tributary";
const LEASE: &str = "tributary-operator";

/// A wall clock that starts at a fixed time and advances with tokio's (paused) clock.
fn clock() -> (Clock, Timestamp) {
    let base = Timestamp::from_second(1_800_000_000).expect("valid time");
    let start = Instant::now();
    let clock: Clock =
        Arc::new(move || base + SignedDuration::try_from(start.elapsed()).expect("small duration"));
    (clock, base)
}

fn elector(client: &kube::Client, me: &str, clock: &Clock) -> LeaderElector {
    LeaderElector::new(client.clone(), NS, LEASE, me).with_clock(clock.clone())
}

fn lease(api: &FakeApi) -> Value {
    api.get(&coll(NS, "leases"), LEASE).expect("lease exists")
}

fn micro(t: Timestamp) -> String {
    // MicroTime's wire form
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn lease_held_by(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": LEASE, "namespace": NS },
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": micro(renewed), "renewTime": micro(renewed),
            "leaseTransitions": transitions
        }
    })
}

fn lease_writes(api: &FakeApi) -> usize {
    api.requests(&format!("PUT {}/{LEASE}", coll(NS, "leases")))
        .len()
        + api.requests(&format!("POST {}", coll(NS, "leases"))).len()
}

#[tokio::test(start_paused = true)]
async fn free_lease_is_acquired_then_renewed() {
    let (client, api) = FakeApi::start();
    let (clock, t0) = clock();
    let a = elector(&client, "a", &clock);
    assert!(a.try_lead().await.expect("round"), "free lease is taken");
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseTransitions"], 0);
    assert_eq!(l["spec"]["renewTime"], micro(t0));
    let version = l["metadata"]["resourceVersion"].clone();

    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.try_lead().await.expect("round"), "holder renews");
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(
        l["spec"]["renewTime"],
        micro(t0 + SignedDuration::from_secs(5))
    );
    assert_eq!(
        l["spec"]["acquireTime"],
        micro(t0),
        "renewal keeps acquireTime"
    );
    assert_eq!(l["spec"]["leaseTransitions"], 0, "renewal is no transition");
    assert_ne!(l["metadata"]["resourceVersion"], version);
    assert_eq!(
        api.requests(&format!("PUT {}/{LEASE}", coll(NS, "leases")))
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn live_lease_of_another_is_followed_and_an_expired_one_taken_over() {
    let (client, api) = FakeApi::start();
    let (clock, t0) = clock();
    api.insert(&coll(NS, "leases"), lease_held_by("b", t0, 3));
    let a = elector(&client, "a", &clock);

    assert!(!a.try_lead().await.expect("round"), "b's lease is live");
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(!a.try_lead().await.expect("round"), "still live at 15 s");
    assert_eq!(lease_writes(&api), 0, "a follower never writes");
    assert_eq!(lease(&api)["spec"]["holderIdentity"], "b");

    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(a.try_lead().await.expect("round"), "expired lease is taken");
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseTransitions"], 4);
    assert_eq!(
        l["spec"]["acquireTime"],
        micro(t0 + SignedDuration::from_secs(16))
    );

    // and now b, coming back, follows a
    let b = elector(&client, "b", &clock);
    assert!(!b.try_lead().await.expect("round"));
    assert_eq!(lease(&api)["spec"]["holderIdentity"], "a");
}

#[tokio::test(start_paused = true)]
async fn two_candidates_racing_for_an_expired_lease_cannot_both_win() {
    let (client, api) = FakeApi::start();
    let (clock, t0) = clock();
    api.insert(&coll(NS, "leases"), lease_held_by("old", t0, 0));
    tokio::time::advance(Duration::from_secs(60)).await;
    let (a, b) = (elector(&client, "a", &clock), elector(&client, "b", &clock));
    let (ra, rb) = tokio::join!(a.try_lead(), b.try_lead());
    let (ra, rb) = (ra.expect("a's round"), rb.expect("b's round"));
    assert_eq!(
        api.requests(&format!("PUT {}/{LEASE}", coll(NS, "leases")))
            .len(),
        2,
        "both read the expired lease and tried to write it"
    );
    assert!(ra ^ rb, "exactly one wins: a={ra} b={rb}");
    let winner = if ra { "a" } else { "b" };
    assert_eq!(lease(&api)["spec"]["holderIdentity"], winner);
    assert_eq!(lease(&api)["spec"]["leaseTransitions"], 1);
}

#[tokio::test(start_paused = true)]
async fn leader_steps_down_before_the_lease_expires_when_renewals_fail() {
    let (client, api) = FakeApi::start();
    let (clock, _) = clock();
    let a = elector(&client, "a", &clock);
    let since = a.acquire().await;
    let renewed: Timestamp = lease(&api)["spec"]["renewTime"]
        .as_str()
        .expect("renewTime")
        .parse()
        .expect("timestamp");
    api.fail(&format!("PUT {}", coll(NS, "leases")), 500);
    let lost = a.hold(since).await;
    let LostLeadership::RenewalFailed { last_error } = &lost else {
        panic!("{lost:?}")
    };
    assert!(
        last_error.contains("write Lease") && last_error.contains("Injected"),
        "{last_error}"
    );
    let stepped_down = since.elapsed();
    assert!(
        stepped_down >= RENEW_DEADLINE && stepped_down < LEASE_DURATION,
        "stepped down after {stepped_down:?}"
    );
    // others may take the lease only after it expires, and by then we had stopped
    let expires = renewed + SignedDuration::try_from(LEASE_DURATION).expect("duration");
    assert!(clock() < expires);
    let b = elector(&client, "b", &clock);
    api.heal();
    assert!(!b.try_lead().await.expect("round"), "not yet expired for b");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_api_server_does_not_keep_a_stale_leader() {
    let (client, api) = FakeApi::start();
    let (clock, _) = clock();
    let a = elector(&client, "a", &clock);
    let since = a.acquire().await;
    api.hang(&format!("GET {}", coll(NS, "leases")));
    let lost = a.hold(since).await;
    assert_eq!(
        lost,
        LostLeadership::RenewalFailed {
            last_error: "lease renewal timed out".into()
        }
    );
    assert!(since.elapsed() <= RENEW_DEADLINE, "{:?}", since.elapsed());
}

#[tokio::test(start_paused = true)]
async fn leader_keeps_leading_through_a_short_outage_and_steps_down_when_taken() {
    let (client, api) = FakeApi::start();
    let (clock, _) = clock();
    let a = elector(&client, "a", &clock);
    let since = a.acquire().await;

    // renewals fail from 4 s to 8 s: the retry at 7 s fails, the one at 9 s succeeds
    let healer = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        healer.fail(&format!("PUT {}", coll(NS, "leases")), 503);
        tokio::time::sleep(Duration::from_secs(4)).await;
        healer.heal();
    });
    let held = tokio::time::timeout(Duration::from_secs(30), a.hold(since)).await;
    assert!(held.is_err(), "still leading after 30 s: {held:?}");
    let renewed: Timestamp = lease(&api)["spec"]["renewTime"]
        .as_str()
        .expect("renewTime")
        .parse()
        .expect("timestamp");
    assert!(clock().duration_since(renewed) <= SignedDuration::from_secs(5));

    // someone else now holds a live lease: the next renewal notices and steps down
    let start = Instant::now();
    api.insert(&coll(NS, "leases"), lease_held_by("b", clock(), 1));
    assert_eq!(a.hold(Instant::now()).await, LostLeadership::Taken);
    assert!(start.elapsed() <= Duration::from_secs(5));
    assert_eq!(
        lease(&api)["spec"]["holderIdentity"],
        "b",
        "b's lease untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn released_lease_is_taken_at_once_and_only_the_holder_releases() {
    let (client, api) = FakeApi::start();
    let (clock, _) = clock();
    let a = elector(&client, "a", &clock);
    let b = elector(&client, "b", &clock);
    assert!(a.try_lead().await.expect("round"));
    assert!(!b.release().await.expect("release"), "b holds nothing");
    assert_eq!(lease(&api)["spec"]["holderIdentity"], "a");
    assert!(a.release().await.expect("release"), "the holder releases");
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], Value::Null);
    assert_eq!(l["spec"]["leaseDurationSeconds"], 1);
    // no waiting for LEASE_DURATION: the next candidate takes it in the same instant
    assert!(
        b.try_lead().await.expect("round"),
        "a released lease is free"
    );
    assert_eq!(lease(&api)["spec"]["holderIdentity"], "b");
    assert!(!a.release().await.expect("release"), "a no longer holds it");
}
