//! Replica placement for new partitions: leaders and replicas spread evenly over the live
//! brokers, counting what they already hold, and over racks when brokers name them.

use std::collections::BTreeMap;

use crate::image::BrokerId;

/// A broker that can take replicas, and how much it already holds.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: BrokerId,
    pub rack: Option<String>,
    pub leaders: usize,
    pub replicas: usize,
}

/// Replica lists (leader first) for `partitions` new partitions of `rf` replicas each.
/// Deterministic: the same candidates give the same answer on every voter.
pub fn assign(
    candidates: &[Candidate],
    partitions: usize,
    rf: usize,
) -> Option<Vec<Vec<BrokerId>>> {
    if rf == 0 || rf > candidates.len() {
        return None;
    }
    let mut load: BTreeMap<BrokerId, Candidate> =
        candidates.iter().map(|c| (c.id, c.clone())).collect();
    let mut out = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let mut chosen: Vec<BrokerId> = Vec::with_capacity(rf);
        // Leader: the fewest leaderships, then the fewest replicas, then the lowest id.
        let leader = load
            .values()
            .min_by_key(|c| (c.leaders, c.replicas, c.id))
            .map(|c| c.id)?;
        chosen.push(leader);
        while chosen.len() < rf {
            let used_racks: Vec<Option<String>> = chosen
                .iter()
                .filter_map(|id| load.get(id).map(|c| c.rack.clone()))
                .collect();
            // Followers: a rack not used yet by this partition, then the fewest replicas.
            let next = load
                .values()
                .filter(|c| !chosen.contains(&c.id))
                .min_by_key(|c| {
                    let rack_taken = c.rack.is_some() && used_racks.contains(&c.rack);
                    (rack_taken, c.replicas, c.id)
                })
                .map(|c| c.id)?;
            chosen.push(next);
        }
        for (i, id) in chosen.iter().enumerate() {
            if let Some(c) = load.get_mut(id) {
                c.replicas += 1;
                if i == 0 {
                    c.leaders += 1;
                }
            }
        }
        out.push(chosen);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32, racks: bool) -> Vec<Candidate> {
        (1..=n)
            .map(|id| Candidate {
                id,
                rack: racks.then(|| format!("r{}", id % 2)),
                leaders: 0,
                replicas: 0,
            })
            .collect()
    }

    #[test]
    fn leaders_and_replicas_spread_evenly() {
        let plan = assign(&brokers(3, false), 12, 3).expect("plan");
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &plan {
            assert_eq!(r.len(), 3);
            let mut distinct = r.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "a broker twice in {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
            for b in r {
                *replicas.entry(*b).or_insert(0) += 1;
            }
        }
        assert!(leaders.values().all(|n| *n == 4), "{leaders:?}");
        assert!(replicas.values().all(|n| *n == 12), "{replicas:?}");
    }

    #[test]
    fn existing_load_is_counted() {
        let mut b = brokers(3, false);
        b[0].leaders = 5;
        b[0].replicas = 5;
        let plan = assign(&b, 2, 1).expect("plan");
        assert!(plan.iter().all(|r| r[0] != 1), "{plan:?}");
    }

    #[test]
    fn racks_are_spread() {
        let plan = assign(&brokers(4, true), 8, 2).expect("plan");
        for r in plan {
            assert_ne!(r[0] % 2, r[1] % 2, "same rack twice in {r:?}");
        }
    }

    #[test]
    fn too_few_brokers_is_refused() {
        assert!(assign(&brokers(2, false), 1, 3).is_none());
        assert!(assign(&brokers(2, false), 1, 0).is_none());
    }
}
