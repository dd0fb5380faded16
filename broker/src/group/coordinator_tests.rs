//! Coordinator tests over an in-memory log, with tokio's clock paused (timers auto-advance).

use std::collections::BTreeSet;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::group::offsets::{CommitPartition, CommitRequest};
use crate::group::GroupConfig;

/// An in-memory `__consumer_offsets`; reads can be held back to observe loading, and appends
/// to stand for a commit waiting for the high watermark.
struct MemLog {
    parts: StdMutex<HashMap<i32, Vec<u8>>>,
    hold_reads: tokio::sync::Semaphore,
    held: std::sync::atomic::AtomicBool,
    hold_appends: tokio::sync::Semaphore,
    /// Appends to this partition wait for `hold_appends`.
    held_partition: StdMutex<Option<i32>>,
}

impl Default for MemLog {
    fn default() -> Self {
        MemLog {
            parts: StdMutex::default(),
            hold_reads: tokio::sync::Semaphore::new(0),
            held: std::sync::atomic::AtomicBool::new(false),
            hold_appends: tokio::sync::Semaphore::new(0),
            held_partition: StdMutex::new(None),
        }
    }
}

impl GroupLog for MemLog {
    fn append(&self, p: i32, batch: BytesMut) -> BoxFuture<'_, Result<(), ResponseError>> {
        self.parts
            .lock()
            .expect("lock")
            .entry(p)
            .or_default()
            .extend_from_slice(&batch);
        let held = *self.held_partition.lock().expect("lock") == Some(p);
        Box::pin(async move {
            if held {
                let _permit = self.hold_appends.acquire().await;
            }
            Ok(())
        })
    }

    fn read_all(&self, p: i32) -> BoxFuture<'_, Result<Bytes, ResponseError>> {
        Box::pin(async move {
            if self.held.load(std::sync::atomic::Ordering::Acquire) {
                let _permit = self.hold_reads.acquire().await;
            }
            let bytes = self
                .parts
                .lock()
                .expect("lock")
                .get(&p)
                .cloned()
                .unwrap_or_default();
            Ok(Bytes::from(bytes))
        })
    }
}

const SESSION: Duration = Duration::from_secs(10);

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupConfig::default()
    }
}

async fn coordinator(log: Arc<MemLog>) -> Arc<GroupCoordinator> {
    let c = GroupCoordinator::new(config(), log);
    c.sync_partitions(50, &(0..50).collect());
    while !c.all_loaded() {
        tokio::task::yield_now().await;
    }
    let (_tx, rx) = watch::channel(false);
    tokio::spawn(run_timers(c.clone(), rx));
    std::mem::forget(_tx);
    c
}

fn join_req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "client".into(),
        client_host: String::new(),
        session_timeout: SESSION,
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: instance.is_none(),
        supports_skip_assignment: false,
    }
}

/// A v4+ dynamic join: MEMBER_ID_REQUIRED, then the real join (parked until the rebalance).
async fn join(c: Arc<GroupCoordinator>, group: &'static str) -> JoinResponse {
    let first = c.join(group, join_req("", None)).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    c.join(group, join_req(&first.member_id, None)).await
}

fn sync_req(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        member_id: member.to_owned(),
        instance_id: None,
        generation,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    }
}

#[tokio::test(start_paused = true)]
async fn two_members_join_sync_heartbeat_and_leave() {
    let c = coordinator(Arc::default()).await;
    let a = tokio::spawn(join(c.clone(), "g"));
    let b = tokio::spawn(join(c.clone(), "g"));
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    assert_eq!((a.error, b.error), (None, None));
    assert_eq!((a.generation, b.generation), (1, 1));
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    let f = {
        let c = c.clone();
        let id = follower.member_id.clone();
        tokio::spawn(async move { c.sync("g", sync_req(&id, 1, vec![])).await })
    };
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"L")),
        (follower.member_id.clone(), Bytes::from_static(b"F")),
    ];
    let l = c
        .sync("g", sync_req(&leader.member_id, 1, assignments))
        .await;
    assert_eq!(l.assignment, Bytes::from_static(b"L"));
    assert_eq!(f.await.expect("sync").assignment, Bytes::from_static(b"F"));
    assert_eq!(c.describe_group("g").expect("describe").state, "Stable");
    assert_eq!(c.heartbeat("g", &follower.member_id, None, 1), Ok(()));
    let left = c.leave("g", vec![(follower.member_id.clone(), None)]).await;
    assert_eq!(left, Ok(vec![Ok(())]));
    assert_eq!(
        c.heartbeat("g", &leader.member_id, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    let rejoined = c.join("g", join_req(&leader.member_id, None)).await;
    assert_eq!(rejoined.generation, 2);
    assert_eq!(rejoined.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_removed_after_its_session_timeout() {
    let c = coordinator(Arc::default()).await;
    let a = join(c.clone(), "g").await;
    c.sync("g", sync_req(&a.member_id, 1, vec![])).await;
    tokio::time::sleep(SESSION - Duration::from_secs(1)).await;
    assert_eq!(c.heartbeat("g", &a.member_id, None, 1), Ok(()));
    tokio::time::sleep(SESSION + Duration::from_secs(1)).await;
    assert_eq!(
        c.heartbeat("g", &a.member_id, None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    let d = c.describe_group("g").expect("describe");
    assert_eq!(d.state, "Empty");
    assert!(d.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_session_expires_at_its_deadline_not_at_the_next_poll() {
    let c = coordinator(Arc::default()).await;
    let a = join(c.clone(), "g").await;
    c.sync("g", sync_req(&a.member_id, 1, vec![])).await;
    // Start the session at an instant that is not on a 100 ms grid.
    tokio::time::sleep(Duration::from_millis(37)).await;
    assert_eq!(c.heartbeat("g", &a.member_id, None, 1), Ok(()));
    tokio::time::sleep(SESSION - Duration::from_millis(1)).await;
    assert_eq!(c.describe_group("g").expect("describe").state, "Stable");
    tokio::time::sleep(Duration::from_millis(2)).await;
    // The timer task woke at the deadline itself.
    assert_eq!(c.describe_group("g").expect("describe").state, "Empty");
}

#[tokio::test(start_paused = true)]
async fn delete_groups_right_after_a_session_ran_out_is_not_refused() {
    let c = coordinator(Arc::default()).await;
    let a = join(c.clone(), "g").await;
    c.sync("g", sync_req(&a.member_id, 1, vec![])).await;
    tokio::time::sleep(Duration::from_millis(37)).await;
    assert_eq!(c.heartbeat("g", &a.member_id, None, 1), Ok(()));
    // Jump exactly to the deadline without letting the timer task run first.
    tokio::time::advance(SESSION).await;
    let deleted = c.delete_groups(vec!["g".to_owned()]).await;
    assert_eq!(deleted, vec![("g".to_owned(), Ok(()))]);
}

#[tokio::test(start_paused = true)]
async fn a_restarting_static_member_keeps_its_assignment_and_fences_the_old_one() {
    let c = coordinator(Arc::default()).await;
    let first = c.join("g", join_req("", Some("i-1"))).await;
    let asg = vec![(first.member_id.clone(), Bytes::from_static(b"mine"))];
    c.sync("g", sync_req(&first.member_id, 1, asg)).await;
    let again = c.join("g", join_req("", Some("i-1"))).await;
    assert_eq!(again.error, None);
    assert_eq!(again.generation, 1, "no rebalance");
    assert_ne!(again.member_id, first.member_id);
    let mut s = sync_req(&again.member_id, 1, vec![]);
    s.instance_id = Some("i-1".into());
    assert_eq!(c.sync("g", s).await.assignment, Bytes::from_static(b"mine"));
    assert_eq!(
        c.heartbeat("g", &first.member_id, Some("i-1"), 1),
        Err(ResponseError::FencedInstanceId)
    );
}

fn commit(generation: i32, member: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        generation,
        member_id: member.to_owned(),
        instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset,
                leader_epoch: 3,
                metadata: Some("m".into()),
            }],
        )],
    }
}

fn only_topic_t(t: &str, _p: i32) -> bool {
    t == "t"
}

#[tokio::test(start_paused = true)]
async fn a_commit_waiting_for_replication_holds_up_only_its_own_partition() {
    let log = Arc::new(MemLog::default());
    let c = coordinator(log.clone()).await;
    let ok = c.commit_offsets("g", commit(-1, "", 1), only_topic_t).await;
    assert_eq!(ok[0].1[0].1, None);
    *log.held_partition.lock().expect("lock") = Some(partition_for("g", 50));
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.commit_offsets("g", commit(-1, "", 2), only_topic_t).await }
    });
    tokio::task::yield_now().await;
    // Every topic still exists: the check returns at once, without the write lock.
    let nothing = c.remove_offsets_of_deleted_topics(|_| true);
    assert!(tokio::time::timeout(Duration::from_secs(1), nothing)
        .await
        .is_ok());
    // Topic "t" was deleted: the removal waits for the commit in progress, then happens.
    let removal = tokio::spawn({
        let c = c.clone();
        async move { c.remove_offsets_of_deleted_topics(|t| t != "t").await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!removal.is_finished() && !pending.is_finished());
    // A group stored in another partition commits meanwhile.
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|g| partition_for(g, 50) != partition_for("g", 50))
        .expect("a group elsewhere");
    let elsewhere = c.commit_offsets(&other, commit(-1, "", 5), only_topic_t);
    let elsewhere = tokio::time::timeout(Duration::from_secs(1), elsewhere).await;
    assert_eq!(elsewhere.expect("not held up")[0].1[0].1, None);
    log.hold_appends.add_permits(10);
    assert_eq!(pending.await.expect("commit")[0].1[0].1, None);
    removal.await.expect("removal");
    assert!(c.fetch_offsets("g", None).expect("fetch").is_empty());
}

#[tokio::test(start_paused = true)]
async fn commits_are_checked_fetched_and_survive_a_reload() {
    let log = Arc::new(MemLog::default());
    let c = coordinator(log.clone()).await;
    let a = join(c.clone(), "g").await;
    c.sync("g", sync_req(&a.member_id, 1, vec![])).await;
    let wrong = c
        .commit_offsets("g", commit(7, &a.member_id, 1), only_topic_t)
        .await;
    assert_eq!(wrong[0].1[0].1, Some(ResponseError::IllegalGeneration));
    let simple = c.commit_offsets("g", commit(-1, "", 1), only_topic_t).await;
    assert_eq!(simple[0].1[0].1, Some(ResponseError::UnknownMemberId));
    let ok = c
        .commit_offsets("g", commit(1, &a.member_id, 42), only_topic_t)
        .await;
    assert_eq!(ok[0].1[0].1, None);
    let mut unknown = commit(1, &a.member_id, 1);
    unknown.topics[0].0 = "gone".into();
    let r = c.commit_offsets("g", unknown, only_topic_t).await;
    assert_eq!(r[0].1[0].1, Some(ResponseError::UnknownTopicOrPartition));
    // A standalone consumer's commit into a group that never had members.
    let r = c
        .commit_offsets("solo", commit(-1, "", 9), only_topic_t)
        .await;
    assert_eq!(r[0].1[0].1, None);

    let reloaded = coordinator(log).await;
    let fetched = reloaded
        .fetch_offsets("g", Some(vec![("t".into(), vec![0, 1])]))
        .expect("fetch");
    let v = fetched[0].1[0].1.clone().expect("committed");
    assert_eq!(
        (v.offset, v.leader_epoch, v.metadata.as_str()),
        (42, 3, "m")
    );
    assert_eq!(fetched[0].1[1].1, None);
    let solo = reloaded.fetch_offsets("solo", None).expect("fetch all");
    assert_eq!(solo[0].1[0].1.as_ref().map(|v| v.offset), Some(9));
    // The group came back Stable with its member and generation.
    let d = reloaded.describe_group("g").expect("describe");
    assert_eq!((d.state, d.members.len()), ("Stable", 1));
    assert_eq!(reloaded.heartbeat("g", &a.member_id, None, 1), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn only_empty_groups_are_deleted_and_tombstones_survive_a_reload() {
    let log = Arc::new(MemLog::default());
    let c = coordinator(log.clone()).await;
    let a = join(c.clone(), "g").await;
    c.sync("g", sync_req(&a.member_id, 1, vec![])).await;
    c.commit_offsets("g", commit(1, &a.member_id, 5), only_topic_t)
        .await;
    let r = c.delete_groups(vec!["g".into(), "nope".into()]).await;
    assert_eq!(r[0].1, Err(ResponseError::NonEmptyGroup));
    assert_eq!(r[1].1, Err(ResponseError::GroupIdNotFound));
    c.leave("g", vec![(a.member_id.clone(), None)])
        .await
        .expect("leave");
    let r = c.delete_groups(vec!["g".into()]).await;
    assert_eq!(r[0].1, Ok(()));
    let reloaded = coordinator(log).await;
    assert!(reloaded.list_groups(&[]).expect("list").is_empty());
    let f = reloaded.fetch_offsets("g", None).expect("fetch");
    assert!(f.is_empty());
}

#[tokio::test(start_paused = true)]
async fn offsets_of_a_group_empty_past_the_retention_expire() {
    let log = Arc::new(MemLog::default());
    let c = coordinator(log.clone()).await;
    c.commit_offsets("solo", commit(-1, "", 9), only_topic_t)
        .await;
    let now = crate::broker::now_ms();
    c.expire_offsets(now).await;
    assert_eq!(c.fetch_offsets("solo", None).expect("fetch").len(), 1);
    let week = i64::try_from(config().offsets_retention.as_millis()).expect("ms");
    c.expire_offsets(now + week + 1).await;
    assert!(c.fetch_offsets("solo", None).expect("fetch").is_empty());
    assert!(c.list_groups(&[]).expect("list").is_empty());
    let reloaded = coordinator(log).await;
    assert!(reloaded
        .fetch_offsets("solo", None)
        .expect("fetch")
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn requests_wait_for_loading_and_other_partitions_are_not_ours() {
    let log = Arc::new(MemLog::default());
    log.held.store(true, std::sync::atomic::Ordering::Release);
    let c = GroupCoordinator::new(config(), log.clone());
    let p = super::super::partition_for("g", 50);
    c.sync_partitions(50, &BTreeSet::from([p]));
    tokio::task::yield_now().await;
    let r = c.join("g", join_req("", None)).await;
    assert_eq!(r.error, Some(ResponseError::CoordinatorLoadInProgress));
    let other = (0..100)
        .map(|i| format!("x{i}"))
        .find(|g| partition_for(g, 50) != p);
    let other = other.expect("a group elsewhere");
    assert_eq!(
        c.fetch_offsets(&other, None).err(),
        Some(ResponseError::NotCoordinator)
    );
    log.hold_reads.add_permits(1);
    while !c.all_loaded() {
        tokio::task::yield_now().await;
    }
    let r = c.join("g", join_req("", None)).await;
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
}

#[tokio::test(start_paused = true)]
async fn an_idle_timer_task_is_woken_by_a_new_groups_deadline() {
    let c = coordinator(Arc::default()).await;
    // The timer task has gone to sleep with no deadline to wait for.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    let a = join(c.clone(), "g").await;
    assert_eq!(a.error, None);
    // The join phase ended at its deadline (the initial delay, once extended for the member the
    // join added), not when the idle timer task would next have looked.
    let delay = config().initial_rebalance_delay;
    assert!(
        t0.elapsed() <= delay * 2,
        "join answered after {:?}",
        t0.elapsed()
    );
}
