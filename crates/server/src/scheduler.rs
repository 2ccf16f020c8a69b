//! Which queued job goes to which rig: a pure function, tested like `judge`.
//!
//! The anchors' worst scheduling failures were decisions made on state nobody
//! checked: jobs sent to a board whose exporter was gone (labgrid #1477, KernelCI
//! #1403), a rig left "Reserved" by a cancel that raced a claim (LAVA d54b70c07), a
//! job queued for hardware that no longer existed and waited silently. So the
//! decision is taken here, from a snapshot the caller reads in one transaction (the
//! queued jobs, the rigs with their states, lab hosts and reservations, and `now`),
//! with no I/O and no clock: the store claims what it returns, and a test can state
//! every rule as input and expected output.
//!
//! The rules:
//! - Jobs are served highest priority first, then in the order submitted; a job
//!   whose `not_before` is still ahead waits without blocking anyone.
//! - A job only goes to a rig that matches its selector, is `Idle` (or `Reserved` by
//!   the job's own submitter), has its lab host online, and is not held by someone
//!   else's reservation that has not yet expired. Never `Running`, `Maintenance`,
//!   `Bad`, `Offline` or `Retired`.
//! - Each job served gets a free rig if one matches; among several it takes the one
//!   the fewest jobs behind it could use (then by name), so a job that could run
//!   anywhere does not take the one rig a narrower job needs. This never lets a later
//!   job pass an earlier one: it only chooses *which* rig the earlier one gets.
//! - A job that no rig could ever run (none matches, or only retired ones do) is
//!   reported with the reason, so queue admission warns instead of letting it wait
//!   forever. Offline, bad or reserved rigs may come back and do not count as never.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use proofrig_proto::api::{RigSelector, RigState};
use proofrig_proto::ids::{JobId, Priority, UnixMillis};

/// A job waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job: JobId,
    pub priority: Priority,
    /// The queue's sequence number: lower was submitted earlier.
    pub order: u64,
    pub target: RigSelector,
    /// Who submitted it: a rig this person has reserved takes it.
    pub owner: String,
    pub not_before: Option<UnixMillis>,
}

/// A rig as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RigSlot {
    pub name: String,
    pub roles: BTreeSet<String>,
    pub tags: BTreeSet<String>,
    pub state: RigState,
    pub labhost_online: bool,
    /// The reservation holding the rig, if any.
    pub reservation: Option<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub holder: String,
    pub until: UnixMillis,
}

/// A job placed on a rig; the store claims it (and mints its fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub job: JobId,
    pub rig: String,
}

/// A job no rig could ever run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub job: JobId,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub picks: Vec<Pick>,
    pub unschedulable: Vec<Unschedulable>,
}

/// One scheduling pass; see the module documentation for the rules.
///
/// Its cost grows with the queue times the rigs a job could take *now* (idle or
/// reserved, online), not times every rig: which rigs a selector matches is worked
/// out once per distinct selector (a deep queue holds few), and rigs that cannot take
/// a job now never enter the choice, whose outcome they could not change.
pub fn schedule(jobs: &[QueuedJob], rigs: &[RigSlot], now: UnixMillis) -> Decisions {
    let mut rigs: Vec<&RigSlot> = rigs.iter().collect();
    rigs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut queue: Vec<&QueuedJob> = jobs.iter().collect();
    queue.sort_by_key(|j| (Reverse(j.priority), j.order, j.job));

    let mut matching: HashMap<&RigSelector, Vec<usize>> = HashMap::new();
    for job in &queue {
        matching.entry(&job.target).or_insert_with(|| {
            rigs.iter().enumerate().filter(|(_, rig)| job.target.matches(&rig.name, &rig.roles, &rig.tags)).map(|(i, _)| i).collect()
        });
    }
    let never: HashMap<&RigSelector, Option<String>> =
        matching.iter().map(|(target, found)| (*target, never_runs(target, found, &rigs))).collect();
    let mut decisions = Decisions::default();
    queue.retain(|job| match &never[&job.target] {
        Some(reason) => {
            decisions.unschedulable.push(Unschedulable { job: job.job, reason: format!("{}: {reason}", job.job) });
            false
        }
        None => job.not_before.is_none_or(|t| t <= now),
    });
    // Only a rig that is online and idle or reserved can take a job now.
    let available: Vec<bool> =
        rigs.iter().map(|rig| rig.labhost_online && matches!(rig.state, RigState::Idle | RigState::Reserved)).collect();
    let candidates: HashMap<&RigSelector, Vec<usize>> =
        matching.iter().map(|(target, found)| (*target, found.iter().copied().filter(|&i| available[i]).collect())).collect();
    // How many jobs not yet served could use each rig.
    let mut demand = vec![0usize; rigs.len()];
    for job in &queue {
        for &i in &candidates[&job.target] {
            demand[i] += 1;
        }
    }
    let mut taken = vec![false; rigs.len()];
    for job in queue {
        let mut best: Option<usize> = None;
        for &i in &candidates[&job.target] {
            demand[i] -= 1;
            if !taken[i] && takes(rigs[i], job, now) && best.is_none_or(|b| demand[i] < demand[b]) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            taken[i] = true;
            decisions.picks.push(Pick { job: job.job, rig: rigs[i].name.clone() });
        }
    }
    decisions
}

/// Whether `rig` may take `job` now.
fn takes(rig: &RigSlot, job: &QueuedJob, now: UnixMillis) -> bool {
    let live = rig.reservation.as_ref().filter(|r| r.until > now);
    let held_by_other = live.is_some_and(|r| r.holder != job.owner);
    rig.labhost_online
        && !held_by_other
        && match rig.state {
            RigState::Idle => true,
            // Its holder's jobs run in it; once it expired it no longer holds the rig.
            RigState::Reserved => rig.reservation.is_some(),
            RigState::Running | RigState::Maintenance | RigState::Bad | RigState::Offline | RigState::Retired => false,
        }
}

/// Why no rig could ever run a job for `target` (whose matching rigs are `found`), if none could.
fn never_runs(target: &RigSelector, found: &[usize], rigs: &[&RigSlot]) -> Option<String> {
    if found.is_empty() {
        return Some(format!("no rig matches {target}"));
    }
    if found.iter().all(|&i| rigs[i].state == RigState::Retired) {
        let names: Vec<&str> = found.iter().map(|&i| rigs[i].name.as_str()).collect();
        return Some(format!("only retired rigs match {target} ({})", names.join(", ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_000_000);

    fn job(id: u64, priority: u8, target: RigSelector) -> QueuedJob {
        QueuedJob { job: JobId(id), priority: Priority::new(priority).unwrap(), order: id, target, owner: "tess".into(), not_before: None }
    }

    fn on(name: &str) -> RigSelector {
        RigSelector::Rig(name.into())
    }

    fn tagged(tags: &[&str]) -> RigSelector {
        RigSelector::Match { roles: BTreeSet::new(), tags: tags.iter().map(|t| t.to_string()).collect() }
    }

    fn rig(name: &str, tags: &[&str]) -> RigSlot {
        RigSlot {
            name: name.into(),
            roles: ["radio-unit".to_string()].into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            state: RigState::Idle,
            labhost_online: true,
            reservation: None,
        }
    }

    fn picks(d: &Decisions) -> Vec<(u64, &str)> {
        d.picks.iter().map(|p| (p.job.0, p.rig.as_str())).collect()
    }

    #[test]
    fn two_jobs_one_rig_the_first_submitted_gets_it_the_other_waits() {
        let d = schedule(&[job(2, 50, on("r1")), job(1, 50, on("r1"))], &[rig("r1", &[])], NOW);
        assert_eq!(picks(&d), [(1, "r1")]);
        assert!(d.unschedulable.is_empty(), "a job waiting for a busy rig is not unschedulable");
    }

    #[test]
    fn priority_beats_age() {
        let d = schedule(&[job(1, 50, on("r1")), job(2, 90, on("r1")), job(3, 10, on("r1"))], &[rig("r1", &[])], NOW);
        assert_eq!(picks(&d), [(2, "r1")]);
    }

    #[test]
    fn a_rig_reserved_by_someone_else_is_skipped_its_holders_job_runs_in_it() {
        let mut reserved = rig("r1", &["lte"]);
        reserved.state = RigState::Reserved;
        reserved.reservation = Some(Reservation { holder: "rita".into(), until: UnixMillis(NOW.0 + 1) });
        let d = schedule(&[job(1, 100, tagged(&["lte"]))], std::slice::from_ref(&reserved), NOW);
        assert_eq!(picks(&d), []);
        assert!(d.unschedulable.is_empty());
        let mut own = job(1, 100, tagged(&["lte"]));
        own.owner = "rita".into();
        assert_eq!(picks(&schedule(&[own], &[reserved.clone()], NOW)), [(1, "r1")]);
        // An Idle rig with a live reservation of someone else is held all the same.
        reserved.state = RigState::Idle;
        assert_eq!(picks(&schedule(&[job(1, 100, tagged(&["lte"]))], &[reserved], NOW)), []);
    }

    #[test]
    fn an_expired_reservation_holds_nothing() {
        let mut r1 = rig("r1", &[]);
        r1.state = RigState::Reserved;
        r1.reservation = Some(Reservation { holder: "rita".into(), until: NOW });
        assert_eq!(picks(&schedule(&[job(1, 50, on("r1"))], &[r1], NOW)), [(1, "r1")]);
    }

    #[test]
    fn a_rig_whose_lab_host_is_offline_is_skipped() {
        let mut r1 = rig("r1", &["lte"]);
        r1.labhost_online = false;
        let d = schedule(&[job(1, 50, tagged(&["lte"]))], &[r1, rig("r2", &["lte"])], NOW);
        assert_eq!(picks(&d), [(1, "r2")]);
        let mut r1 = rig("r1", &[]);
        r1.labhost_online = false;
        let d = schedule(&[job(1, 50, on("r1"))], &[r1], NOW);
        assert_eq!((picks(&d), d.unschedulable.len()), (vec![], 0), "it may come back: the job waits");
    }

    #[test]
    fn only_idle_rigs_take_jobs() {
        for state in [RigState::Running, RigState::Maintenance, RigState::Bad, RigState::Offline, RigState::Retired] {
            let mut r1 = rig("r1", &["lte"]);
            r1.state = state;
            let d = schedule(&[job(1, 50, tagged(&["lte"]))], &[r1, rig("r2", &[])], NOW);
            assert_eq!(picks(&d), [], "{state:?}");
        }
    }

    #[test]
    fn no_starvation_an_older_equal_priority_job_runs_before_every_newer_one() {
        // r1 comes free once per pass; every pass a newer job for it arrives, some
        // broader than the old one. The rig serves them strictly in submission order.
        let mut queue = vec![job(1, 50, on("r1"))];
        let mut served = Vec::new();
        for pass in 2..8 {
            queue.push(job(pass, 50, if pass % 2 == 0 { tagged(&[]) } else { on("r1") }));
            let d = schedule(&queue, &[rig("r1", &[])], UnixMillis(NOW.0 + pass));
            let [Pick { job, .. }] = d.picks.as_slice() else { panic!("pass {pass}: {d:?}") };
            served.push(job.0);
            queue.retain(|j| j.job != *job);
        }
        assert_eq!(served, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_job_for_retired_rigs_only_or_for_no_rig_is_reported_unschedulable() {
        let mut old = rig("old", &["2g"]);
        old.state = RigState::Retired;
        let mut bad = rig("bad", &["lte"]);
        bad.state = RigState::Bad;
        let rigs = [old, bad, rig("r1", &[])];
        let d = schedule(&[job(1, 50, tagged(&["2g"])), job(2, 50, on("nowhere")), job(3, 50, tagged(&["lte"]))], &rigs, NOW);
        assert_eq!(picks(&d), []);
        let reasons: Vec<(u64, &str)> = d.unschedulable.iter().map(|u| (u.job.0, u.reason.as_str())).collect();
        assert_eq!(reasons, [(1, "job 1: only retired rigs match a rig with tags [2g] (old)"), (2, "job 2: no rig matches rig nowhere")]);
    }

    #[test]
    fn a_flexible_job_leaves_a_narrower_job_the_only_rig_it_can_use() {
        // By name, job 1 would take `a`, the only rig job 2 can use.
        let rigs = [rig("a", &["lte", "arm"]), rig("b", &["lte"])];
        let d = schedule(&[job(1, 50, tagged(&["lte"])), job(2, 50, tagged(&["arm"]))], &rigs, NOW);
        assert_eq!(picks(&d), [(1, "b"), (2, "a")]);
        // The earlier job still comes first when only the contested rig is free.
        let mut b = rigs[1].clone();
        b.state = RigState::Running;
        let d = schedule(&[job(1, 50, tagged(&["lte"])), job(2, 50, tagged(&["arm"]))], &[rigs[0].clone(), b], NOW);
        assert_eq!(picks(&d), [(1, "a")]);
        // Jobs already served no longer count: job 1 wants `b` or `c` and takes `c`;
        // then `b` is wanted by nobody behind job 2, `a` by job 3.
        let rigs = [rig("a", &["x", "y"]), rig("b", &["x", "w"]), rig("c", &["w"])];
        let d = schedule(&[job(1, 50, tagged(&["w"])), job(2, 50, tagged(&["x"])), job(3, 50, tagged(&["y"]))], &rigs, NOW);
        assert_eq!(picks(&d), [(1, "c"), (2, "b"), (3, "a")]);
    }

    #[test]
    fn a_job_waits_for_its_start_time_without_holding_others_back() {
        let mut later = job(1, 90, on("r1"));
        later.not_before = Some(UnixMillis(NOW.0 + 60_000));
        let queue = [later, job(2, 10, on("r1"))];
        assert_eq!(picks(&schedule(&queue, &[rig("r1", &[])], NOW)), [(2, "r1")]);
        assert_eq!(picks(&schedule(&queue, &[rig("r1", &[])], UnixMillis(NOW.0 + 60_000))), [(1, "r1")]);
    }

    #[test]
    fn the_same_snapshot_in_any_order_gives_the_same_decisions() {
        let rigs = vec![rig("c", &["lte"]), rig("a", &["lte"]), rig("b", &["lte", "arm"]), rig("d", &["5g"])];
        let jobs = vec![
            job(4, 50, tagged(&["lte"])),
            job(1, 70, tagged(&["arm"])),
            job(3, 50, on("d")),
            job(2, 50, tagged(&["lte"])),
            job(5, 50, on("zz")),
        ];
        let expected = schedule(&jobs, &rigs, NOW);
        assert_eq!(picks(&expected), [(1, "b"), (2, "a"), (3, "d"), (4, "c")]);
        let (mut rigs, mut jobs) = (rigs, jobs);
        for _ in 0..4 {
            rigs.rotate_left(1);
            jobs.reverse();
            jobs.rotate_left(2);
            assert_eq!(schedule(&jobs, &rigs, NOW), expected);
        }
    }

    /// The rules written the plain way (every job against every rig), to hold the fast
    /// [`schedule`] to: on random snapshots the two decide alike.
    fn reference(jobs: &[QueuedJob], rigs: &[RigSlot], now: UnixMillis) -> Decisions {
        let mut rigs: Vec<&RigSlot> = rigs.iter().collect();
        rigs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut queue: Vec<&QueuedJob> = jobs.iter().collect();
        queue.sort_by_key(|j| (Reverse(j.priority), j.order, j.job));
        let matches = |job: &QueuedJob, rig: &RigSlot| job.target.matches(&rig.name, &rig.roles, &rig.tags);
        let mut decisions = Decisions::default();
        queue.retain(|job| {
            let found: Vec<usize> = rigs.iter().enumerate().filter(|(_, r)| matches(job, r)).map(|(i, _)| i).collect();
            match never_runs(&job.target, &found, &rigs) {
                Some(reason) => {
                    decisions.unschedulable.push(Unschedulable { job: job.job, reason: format!("{}: {reason}", job.job) });
                    false
                }
                None => job.not_before.is_none_or(|t| t <= now),
            }
        });
        let mut demand: Vec<usize> = rigs.iter().map(|rig| queue.iter().filter(|job| matches(job, rig)).count()).collect();
        let mut taken = vec![false; rigs.len()];
        for job in queue {
            let mut best: Option<usize> = None;
            for (i, rig) in rigs.iter().enumerate().filter(|(_, rig)| matches(job, rig)) {
                demand[i] -= 1;
                if !taken[i] && takes(rig, job, now) && best.is_none_or(|b| demand[i] < demand[b]) {
                    best = Some(i);
                }
            }
            if let Some(i) = best {
                taken[i] = true;
                decisions.picks.push(Pick { job: job.job, rig: rigs[i].name.clone() });
            }
        }
        decisions
    }

    #[test]
    fn the_fast_pass_decides_as_the_plain_rules_do_on_random_snapshots() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let states = [
            RigState::Idle,
            RigState::Idle,
            RigState::Idle,
            RigState::Running,
            RigState::Reserved,
            RigState::Offline,
            RigState::Retired,
            RigState::Bad,
        ];
        let roles = ["radio-unit", "core"];
        let tags = ["lte", "nr", "lab-b"];
        let (mut picked, mut refused) = (0, 0);
        for round in 0..300 {
            let rigs: Vec<RigSlot> = (0..1 + next(12))
                .map(|i| {
                    let state = states[next(states.len() as u64) as usize];
                    RigSlot {
                        name: format!("r{i:02}"),
                        roles: [roles[next(2) as usize].to_string()].into(),
                        tags: (0..next(3)).map(|_| tags[next(3) as usize].to_string()).collect(),
                        state,
                        labhost_online: next(5) > 0,
                        reservation: (state == RigState::Reserved || next(6) == 0).then(|| Reservation {
                            holder: ["tess", "tom"][next(2) as usize].into(),
                            until: UnixMillis(NOW.0 + next(3) * 1000 - 1000),
                        }),
                    }
                })
                .collect();
            let jobs: Vec<QueuedJob> = (0..next(30))
                .map(|id| {
                    let target = match next(3) {
                        0 => RigSelector::Rig(format!("r{:02}", next(14))),
                        1 => RigSelector::Match { roles: [roles[next(2) as usize].to_string()].into(), tags: BTreeSet::new() },
                        _ => RigSelector::Match { roles: BTreeSet::new(), tags: [tags[next(3) as usize].to_string()].into() },
                    };
                    QueuedJob {
                        job: JobId(id),
                        priority: Priority::new(next(101) as u8).unwrap(),
                        order: id,
                        target,
                        owner: ["tess", "tom"][next(2) as usize].into(),
                        not_before: (next(8) == 0).then_some(UnixMillis(NOW.0 + 5_000)),
                    }
                })
                .collect();
            let (fast, plain) = (schedule(&jobs, &rigs, NOW), reference(&jobs, &rigs, NOW));
            assert_eq!(fast.picks, plain.picks, "round {round}");
            assert_eq!(fast.unschedulable, plain.unschedulable, "round {round}");
            (picked, refused) = (picked + fast.picks.len(), refused + fast.unschedulable.len());
        }
        assert!(picked > 300 && refused > 100, "the snapshots exercise both: {picked} picks, {refused} never runnable");
    }
}
