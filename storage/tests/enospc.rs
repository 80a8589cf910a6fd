//! A full disk (ENOSPC) gives `StorageError::NoSpace`, rolls the log back to what was written
//! (an idempotent producer's state included), and leaves it readable; freeing space
//! (retention) lets appends continue. Uses a 1 MiB tmpfs,
//! so it needs root (mount); without it the test says so and passes without checking.

// Test helpers outside #[test] fns: unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use skein_storage::batch::build_producer_batch;
use skein_storage::{LogConfig, PartitionLog, StorageError, TailCache};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mount(at.to_path_buf()))
}

#[test]
fn full_disk_is_a_typed_error_and_the_log_stays_readable() {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(base).unwrap();
    let Some(mount) = mount_small_tmpfs(tmp.path()) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = mount.0.join("p-0");
    LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let config = LogConfig {
                segment_bytes: 128 << 10,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(&dir, config, Rc::new(TailCache::new(8 << 20)))
                .await
                .unwrap();
            let mut acked = Vec::new();
            let err = loop {
                let seq = acked.len() as i32;
                let b = build_producer_batch(0, 1, 7, &[seq as u8; 10_000], 42, 0, seq);
                match log.append(Bytes::from(b.clone()), 0).await {
                    Ok(info) => acked.push((info.first_offset, b)),
                    Err(e) => break e,
                }
                assert!(acked.len() < 1000, "the disk never filled up");
            };
            assert!(matches!(err, StorageError::NoSpace { .. }), "got {err:?}");
            assert!(acked.len() > 50);
            let leo = acked.last().unwrap().0 + 1;
            assert_eq!(log.log_end_offset(), leo, "rolled back to what was written");
            for (offset, b) in &acked {
                let r = log.read(*offset, 1, i64::MAX).await.unwrap();
                assert_eq!(r.chunks[0][21..], b[21..], "batch at {offset}");
            }
            // Still full: the producer's retry of the failed batch gets another typed error (it
            // was rolled back, so it is no duplicate), no panic.
            let seq = acked.len() as i32;
            let b = build_producer_batch(0, 1, 7, &[1; 10_000], 42, 0, seq);
            assert!(log.append(Bytes::from(b.clone()), 0).await.is_err());
            assert_eq!(log.log_end_offset(), leo);
            // Retention frees space; appends work again and continue at the log end.
            log.set_high_watermark(leo);
            log.update_config(LogConfig {
                retention_bytes: 200 << 10,
                segment_bytes: 128 << 10,
                ..LogConfig::default()
            })
            .unwrap();
            let r = log.enforce_retention(0).await.unwrap();
            assert!(r.deleted_segments > 0);
            let info = log.append(Bytes::from(b), 0).await.unwrap();
            assert_eq!(info.first_offset, leo);
            assert!(!info.duplicate);
            // The last batch acknowledged before the disk filled is still a duplicate.
            let (offset, b) = acked.last().unwrap();
            let info = log.append(Bytes::from(b.clone()), 0).await.unwrap();
            assert!(info.duplicate && info.first_offset == *offset);
            drop(log);
        });
    drop(mount);
}
