use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);
const DELAY: Duration = Duration::from_millis(100);

fn limits(delay_ms: u64) -> GroupLimits {
    GroupLimits {
        initial_rebalance_delay: Duration::from_millis(delay_ms),
        max_size: 100,
    }
}

fn req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"c")),
            ("range".into(), Bytes::from_static(b"r")),
        ],
        require_known_member_id: true,
    }
}

fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected a parked request"),
    }
}

fn now_of<T: std::fmt::Debug>(r: Reply<T>) -> T {
    match r {
        Reply::Now(v) => v,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().ok().flatten()
}

/// Ends the initial delay: the first window saw a second member join, so it runs twice.
fn settle(g: &mut Group, now: Instant) {
    g.check_deadlines(now + DELAY);
    g.check_deadlines(now + 2 * DELAY);
}

/// KIP-394 two-step join: the first attempt hands out the id.
fn join_new(g: &mut Group, now: Instant) -> (String, oneshot::Receiver<JoinResult>) {
    let first = now_of(g.join(req("", None), now));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id.clone();
    (id.clone(), later(g.join(req(&id, None), now)))
}

/// Two members through a full rebalance to Stable; returns (leader, follower) ids.
fn stable_pair(g: &mut Group, now: Instant) -> (String, String) {
    let (a, mut ja) = join_new(g, now);
    let (b, mut jb) = join_new(g, now);
    settle(g, now);
    let ra = ready(&mut ja).expect("a answered");
    let rb = ready(&mut jb).expect("b answered");
    assert_eq!(ra.generation, 1);
    let (leader, follower) = if ra.leader == a { (a, b) } else { (b, a) };
    let mut assignments = HashMap::new();
    assignments.insert(leader.clone(), Bytes::from_static(b"L"));
    assignments.insert(follower.clone(), Bytes::from_static(b"F"));
    let mut fsync = match g.sync(&follower, None, 1, None, None, HashMap::new(), now) {
        SyncStep::Reply(r) => later(r),
        SyncStep::Persist { .. } => panic!("follower does not persist"),
    };
    match g.sync(&leader, None, 1, None, None, assignments, now) {
        SyncStep::Persist {
            generation,
            assignments,
            mut reply,
            record,
        } => {
            assert_eq!(record.members.len(), 2);
            g.complete_leader_sync(generation, assignments, Ok(()), now);
            assert_eq!(ready(&mut reply).map(|r| r.assignment), Some("L".into()));
        }
        SyncStep::Reply(_) => panic!("leader persists"),
    }
    assert_eq!(ready(&mut fsync).map(|r| r.assignment), Some("F".into()));
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(rb.protocol_name.as_deref(), Some("cooperative-sticky"));
    (leader, follower)
}

#[test]
fn two_members_rebalance_to_stable_and_leader_sees_everyone() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (a, mut ja) = join_new(&mut g, now);
    let (_b, mut jb) = join_new(&mut g, now);
    // Nothing completes before the initial delay ends.
    g.check_deadlines(now + DELAY / 2);
    assert!(ready(&mut ja).is_none());
    settle(&mut g, now);
    let ra = ready(&mut ja).expect("answered");
    let rb = ready(&mut jb).expect("answered");
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn full_cycle_reaches_stable() {
    let mut g = Group::new("g", limits(100));
    stable_pair(&mut g, Instant::now());
}

#[test]
fn heartbeat_errors_follow_kafka() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (leader, follower) = stable_pair(&mut g, now);
    assert_eq!(g.heartbeat(&follower, None, 1, now), Ok(()));
    assert_eq!(
        g.heartbeat("nobody", None, 1, now),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&follower, None, 0, now),
        Err(ResponseError::IllegalGeneration)
    );
    // A third member triggers a rebalance that the others learn of by heartbeat.
    let (_c, _jc) = join_new(&mut g, now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader, None, 1, now),
        Err(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn silent_member_expires_and_the_rest_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (leader, follower) = stable_pair(&mut g, now);
    let later_t = now + SESSION / 2;
    assert_eq!(g.heartbeat(&leader, None, 1, later_t), Ok(()));
    // The follower stays silent past its session.
    g.check_deadlines(now + SESSION + Duration::from_millis(1));
    assert!(!g.has_member(&follower));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let mut j = later(g.join(req(&leader, None), now + SESSION));
    let r = ready(&mut j).expect("the sole member completes the join at once");
    assert_eq!(r.generation, 2);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (leader, follower) = stable_pair(&mut g, now);
    // The follower's subscription changed: it rejoins, which starts a rebalance.
    let mut changed = req(&follower, None);
    changed.protocols[0].1 = Bytes::from_static(b"new subscription");
    let mut j = later(g.join(changed, now));
    // The leader keeps heartbeating but never rejoins.
    let t = now + REBALANCE / 2;
    assert_eq!(
        g.heartbeat(&leader, None, 1, t),
        Err(ResponseError::RebalanceInProgress)
    );
    g.check_deadlines(t);
    assert!(ready(&mut j).is_none(), "waits for the leader");
    g.check_deadlines(now + REBALANCE);
    let r = ready(&mut j).expect("completed without the leader");
    assert_eq!(
        r.leader, follower,
        "leadership moved to a member who rejoined"
    );
    assert!(!g.has_member(&leader));
}

#[test]
fn member_that_never_syncs_is_dropped_at_the_sync_deadline() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (_a, mut ja) = join_new(&mut g, now);
    let (_b, mut jb) = join_new(&mut g, now);
    settle(&mut g, now);
    let ra = ready(&mut ja).expect("a");
    let rb = ready(&mut jb).expect("b");
    let follower = if ra.leader == ra.member_id {
        rb.member_id
    } else {
        ra.member_id
    };
    let mut fs = match g.sync(&follower, None, 1, None, None, HashMap::new(), now) {
        SyncStep::Reply(r) => later(r),
        SyncStep::Persist { .. } => panic!("follower"),
    };
    g.check_deadlines(now + REBALANCE);
    assert_eq!(
        ready(&mut fs).and_then(|r| r.error),
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(g.members().count(), 1);
}

#[test]
fn static_member_restart_keeps_generation_and_fences_old_id() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let mut j1 = later(g.join(req("", Some("i-1")), now));
    g.check_deadlines(now + DELAY);
    let r1 = ready(&mut j1).expect("joined");
    let old_id = r1.member_id.clone();
    match g.sync(&old_id, Some("i-1"), 1, None, None, HashMap::new(), now) {
        SyncStep::Persist {
            generation,
            assignments,
            ..
        } => g.complete_leader_sync(generation, assignments, Ok(()), now),
        SyncStep::Reply(_) => panic!("leader"),
    }
    assert_eq!(g.state, GroupState::Stable);
    // Restarted: unknown member id, same instance id.
    let mut j2 = later(g.join(req("", Some("i-1")), now));
    let r2 = ready(&mut j2).expect("answered at once");
    assert_eq!(r2.error, None);
    assert_eq!(r2.generation, 1, "no rebalance");
    assert_ne!(r2.member_id, old_id);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(
        g.heartbeat(&old_id, Some("i-1"), 1, now),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(g.heartbeat(&r2.member_id, Some("i-1"), 1, now), Ok(()));
}

#[test]
fn last_member_leaving_empties_the_group_and_asks_for_a_write() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (leader, follower) = stable_pair(&mut g, now);
    assert_eq!(g.leave(&follower, None, now), Ok(()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.leave("nobody", None, now),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.leave(&leader, None, now), Ok(()));
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, 2);
    assert!(g.take_needs_write());
    assert!(!g.take_needs_write());
}

#[test]
fn initial_delay_waits_for_more_members() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(3000));
    let (_a, mut ja) = join_new(&mut g, now);
    g.check_deadlines(now + Duration::from_millis(1000));
    let (_b, mut jb) = join_new(&mut g, now + Duration::from_millis(1000));
    // The first window ends with a new member added: it is extended once more.
    g.check_deadlines(now + Duration::from_millis(3000));
    assert!(ready(&mut ja).is_none());
    g.check_deadlines(now + Duration::from_millis(6000));
    assert_eq!(ready(&mut ja).map(|r| r.generation), Some(1));
    assert_eq!(ready(&mut jb).map(|r| r.generation), Some(1));
}

#[test]
fn inconsistent_protocols_are_refused() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    stable_pair(&mut g, now);
    let mut other = req("", None);
    other.protocols = vec![("roundrobin-only".into(), Bytes::new())];
    assert_eq!(
        now_of(g.join(other, now)).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn stored_group_round_trips_members_and_assignments() {
    let now = Instant::now();
    let mut g = Group::new("g", limits(100));
    let (leader, follower) = stable_pair(&mut g, now);
    let loaded = Group::from_stored("g", g.to_stored(None), now, limits(100));
    assert_eq!(loaded.state, GroupState::Stable);
    assert_eq!(loaded.generation, 1);
    assert_eq!(loaded.leader.as_deref(), Some(leader.as_str()));
    let f = loaded
        .members()
        .find(|m| m.id == follower)
        .expect("follower loaded");
    assert_eq!(f.assignment, Bytes::from_static(b"F"));
}
