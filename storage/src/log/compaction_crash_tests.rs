//! Crash tests of compaction: a pass stopped at each point of a segment swap (the files left as
//! a crash would leave them), then an unclean reopen.

use super::compaction::{CrashPoint, CRASH_AT};
use super::compaction_tests::{
    active_base, compact_config, compacted, fill, open_with, records, Rec,
};
use super::tests::{read_all, run, temp_dir};

#[test]
fn a_crash_at_any_point_of_a_swap_leaves_the_old_or_the_new_log() {
    for at in [
        CrashPoint::Cleaned,
        CrashPoint::Swapped,
        CrashPoint::MemberRemoved,
        CrashPoint::Renamed,
    ] {
        let dir = temp_dir();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let log = open_with(&path, compact_config(), 0).await;
            let model = fill(&log, 300).await;
            log.set_high_watermark(log.log_end_offset());
            let clean_end = active_base(&log);
            let old = read_all(&log, 0).await;
            CRASH_AT.with(|c| c.set(Some(at)));
            let r = log.compact(10_000).await;
            CRASH_AT.with(|c| c.set(None));
            assert!(r.is_err(), "{at:?}");
            drop(log);
            let names = || {
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect::<Vec<_>>()
            };
            let leftover = names()
                .iter()
                .any(|n| n.ends_with(".cleaned") || n.ends_with(".swap"));
            assert_eq!(leftover, at != CrashPoint::Renamed, "{at:?}");
            let log = open_with(&path, compact_config(), 0).await;
            assert!(!names()
                .iter()
                .any(|n| n.ends_with(".cleaned") || n.ends_with(".swap")));
            // The first group was cleaned, or not at all; later groups were never touched.
            let now = records(&log).await;
            if at == CrashPoint::Cleaned {
                assert_eq!(read_all(&log, 0).await, old, "{at:?}: the old log");
            } else {
                let first_group_end = log.inner.state.borrow().segments[1].base_offset;
                let new = compacted(&model, clean_end, false);
                let split = |v: &[Rec]| -> (Vec<Rec>, Vec<Rec>) {
                    v.iter().cloned().partition(|r| r.offset < first_group_end)
                };
                assert_eq!(split(&now).0, split(&new).0, "{at:?}: the new first group");
                assert_eq!(split(&now).1, split(&model).1, "{at:?}: the old rest");
            }
            assert_eq!(log.log_end_offset(), model.last().unwrap().offset + 1);
            // A pass after recovery completes the work.
            log.set_high_watermark(log.log_end_offset());
            let _ = log.compact(10_000).await.unwrap();
            assert_eq!(
                records(&log).await,
                compacted(&model, clean_end, false),
                "{at:?}"
            );
            drop(log);
            let log = open_with(&path, compact_config(), 0).await;
            assert_eq!(
                records(&log).await,
                compacted(&model, clean_end, false),
                "{at:?}"
            );
        });
    }
}

#[test]
fn garbage_cleaned_files_are_removed_at_open() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 0).await;
        let _ = fill(&log, 100).await;
        let old = read_all(&log, 0).await;
        drop(log);
        let name = format!("{:020}.log.cleaned", 0);
        std::fs::write(path.join(&name), b"half a segment").unwrap();
        let log = open_with(&path, compact_config(), 0).await;
        assert!(!path.join(&name).exists());
        assert_eq!(read_all(&log, 0).await, old);
    });
}
