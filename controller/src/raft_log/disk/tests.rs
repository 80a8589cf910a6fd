use super::*;
use crate::test_util::{run, temp_dir};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; 100].into(),
        ..Entry::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..ConfState::default()
    }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
    s.data = data.to_vec().into();
    s
}

const SEGMENT_BYTES: u64 = 4096;

#[test]
fn entries_and_hard_state_survive_a_restart_and_conflicts_are_replaced() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert!(rec.entries.is_empty());
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(rec.hard_state, HardState::default());
        disk.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        // A new leader replaces 4..5.
        disk.append(&[entry(4, 2), entry(5, 2), entry(6, 2)])
            .await
            .unwrap();
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 4,
            ..HardState::default()
        };
        disk.save_state(&hs, &voters(&[1, 2, 3])).await.unwrap();
        disk.close().await.unwrap();

        // The configured voters only count for a group that never ran here.
        let (disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[9]))
            .await
            .unwrap();
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.conf_state.voters, vec![1, 2, 3]);
        let got: Vec<(u64, u64)> = rec.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]);
        assert_eq!(rec.entries[5].data, entry(6, 2).data);
        // Dropped without close: the next open runs storage recovery.
        drop(disk);
        let (_disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert_eq!(rec.entries.len(), 6);
    });
}

#[test]
fn a_snapshot_compacts_whole_segments_and_reopens() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (disk, _) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        for i in 1..=100 {
            disk.append(&[entry(i, 1)]).await.unwrap();
        }
        let segments = disk.segment_count();
        assert!(segments > 3, "4 KiB segments roll: {segments}");
        let hs = HardState {
            term: 1,
            commit: 90,
            ..HardState::default()
        };
        disk.save_state(&hs, &voters(&[1, 2, 3])).await.unwrap();
        disk.save_snapshot(&snapshot(80, 1, b"image"))
            .await
            .unwrap();
        disk.compact(80).await.unwrap();
        assert!(disk.segment_count() < segments);
        let start = disk.log_start_offset();
        assert!(start > 1 && start <= 81, "log start {start}");
        disk.close().await.unwrap();

        let (_disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert_eq!(rec.snapshot.get_metadata().index, 80);
        assert_eq!(&rec.snapshot.data[..], b"image");
        assert_eq!(rec.entries.first().map(|e| e.index), Some(81));
        assert_eq!(rec.entries.last().map(|e| e.index), Some(100));
        assert_eq!(rec.hard_state.commit, 90);
    });
}

#[test]
fn a_received_snapshot_restarts_the_log_even_after_a_crash_in_between() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (disk, _) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        disk.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        // The leader's snapshot at 8 has term 2: our entries 8..10 are another history.
        disk.save_snapshot(&snapshot(8, 2, b"theirs"))
            .await
            .unwrap();
        // Crash before `restart_after`.
        disk.close().await.unwrap();
        let (disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert!(rec.entries.is_empty(), "diverged suffix dropped");
        assert_eq!(rec.hard_state.commit, 8);
        assert_eq!(rec.hard_state.term, 2);
        disk.append(&[entry(9, 2)]).await.unwrap();
        disk.close().await.unwrap();

        // The same history continues: a snapshot at 9 (term 2) keeps nothing to drop.
        let (disk, _) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        disk.append(&[entry(10, 2)]).await.unwrap();
        disk.save_snapshot(&snapshot(9, 2, b"ours")).await.unwrap();
        disk.close().await.unwrap();
        let (disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert_eq!(
            rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [10]
        );

        // Far ahead: the whole log restarts after the snapshot.
        disk.save_snapshot(&snapshot(50, 3, b"later"))
            .await
            .unwrap();
        disk.restart_after(50).await.unwrap();
        disk.append(&[entry(51, 3)]).await.unwrap();
        disk.close().await.unwrap();
        let (_disk, rec) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1, 2, 3]))
            .await
            .unwrap();
        assert_eq!(
            rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [51]
        );
        assert_eq!(rec.hard_state.commit, 50);
    });
}

#[test]
fn damaged_checkpoints_are_refused() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (disk, _) = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1]))
            .await
            .unwrap();
        disk.close().await.unwrap();
        let state = path.join(RAFT_STATE_FILE);
        let mut bytes = std::fs::read(&state).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&state, &bytes).unwrap();
        let err = DiskLog::open(&path, SEGMENT_BYTES, voters(&[1]))
            .await
            .err()
            .expect("a damaged raft-state must not open");
        assert!(matches!(err, ControllerError::Corrupt { .. }), "{err}");
    });
}

#[test]
fn record_values_are_read_back_exactly() {
    let e = entry(42, 7);
    let framed = frame(&e, 1).unwrap();
    let h = RecordBatchHeader::parse(&framed).unwrap();
    assert_eq!(unframe(&framed, &h, Path::new("x")).unwrap(), e);
    // The value ends one byte (the header count) before the batch: any shorter cut is refused.
    for cut in 0..framed.len() - 1 {
        assert_eq!(record_value(&framed[..cut]), None, "cut at {cut}");
    }
    assert_eq!(varlong(&[0x80; 11], &mut 0), None);
}
