use std::path::PathBuf;

use super::*;
use crate::config::parse_cpu_list;

#[test]
fn io_uring_disabled_parses_the_three_values() {
    assert_eq!(parse_io_uring_disabled("0\n"), Some(0));
    assert_eq!(parse_io_uring_disabled("1"), Some(1));
    assert_eq!(parse_io_uring_disabled(" 2 \n"), Some(2));
    assert_eq!(parse_io_uring_disabled("3"), None);
    assert_eq!(parse_io_uring_disabled(""), None);
    assert_eq!(parse_io_uring_disabled("yes"), None);
}

#[test]
fn io_uring_the_attempt_decides_the_sysctl_explains() {
    assert_eq!(io_uring_verdict(Some(0), Ok(())).status, Status::Ok);
    // Root may use io_uring under 1: the attempt worked, so it is fine.
    assert_eq!(io_uring_verdict(Some(1), Ok(())).status, Status::Ok);
    assert_eq!(io_uring_verdict(None, Ok(())).status, Status::Ok);
    let c = io_uring_verdict(Some(2), Err(libc::EPERM));
    assert_eq!(c.status, Status::Fail);
    assert!(c.remedy.unwrap().contains("io_uring_disabled=0"));
    let c = io_uring_verdict(Some(1), Err(libc::EPERM));
    assert!(c.remedy.unwrap().contains("io_uring_group"));
    let c = io_uring_verdict(Some(0), Err(libc::EPERM));
    assert!(c.remedy.unwrap().contains("seccomp"));
    let c = io_uring_verdict(None, Err(libc::ENOSYS));
    assert_eq!(c.status, Status::Fail);
    assert!(c.remedy.unwrap().contains("5.8"));
    let c = io_uring_verdict(None, Err(libc::ENOMEM));
    assert!(c.remedy.unwrap().contains("MEMLOCK"));
}

#[test]
fn memlock_verdicts() {
    const ARENA: usize = crate::limits::IO_MEMORY_BYTES_PER_SHARD_DEFAULT;
    let m = |limit_bytes, raised| Memlock {
        limit_bytes,
        raised,
    };
    assert_eq!(memlock_verdict(m(None, false), 8, ARENA).status, Status::Ok);
    assert_eq!(
        memlock_verdict(m(Some(65536), true), 8, ARENA).status,
        Status::Ok
    );
    let c = memlock_verdict(m(Some(65536), false), 8, ARENA);
    assert_eq!(c.status, Status::Fail);
    assert!(c.remedy.unwrap().contains("LimitMEMLOCK=infinity"));
    // systemd's usual 8 MiB: glommio starts, but 2 shards want 128 MiB registered.
    assert_eq!(
        memlock_verdict(m(Some(8 << 20), false), 2, ARENA).status,
        Status::Warn
    );
    assert_eq!(
        memlock_verdict(m(Some(8 << 20), false), 0, ARENA).status,
        Status::Ok
    );
    assert_eq!(
        memlock_verdict(m(Some(1 << 30), false), 8, ARENA).status,
        Status::Ok
    );
    assert_eq!(
        memlock_verdict(m(Some(1 << 30), false), 8, 256 << 20).status,
        Status::Warn
    );
}

fn host(present: &str, online: &str, affinity: &str) -> Cpus {
    Cpus {
        present: Some(parse_cpu_list(present).unwrap()),
        online: Some(parse_cpu_list(online).unwrap()),
        affinity: parse_cpu_list(affinity).unwrap(),
        isolated: None,
        nohz_full: None,
    }
}

#[test]
fn cores_must_exist_be_online_and_allowed() {
    let h = host("0-7", "0-5", "0-3,5");
    assert_eq!(cores_verdict(&[0, 1], &h).status, Status::Ok);
    let c = cores_verdict(&[0, 4095], &h);
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("4095"), "{}", c.detail);
    assert!(c.detail.contains("do not exist"), "{}", c.detail);
    let c = cores_verdict(&[6], &h);
    assert!(c.detail.contains("offline"), "{}", c.detail);
    let c = cores_verdict(&[4], &h);
    assert!(c.detail.contains("affinity"), "{}", c.detail);
    assert_eq!(c.status, Status::Fail);
    let unread = Cpus {
        present: None,
        ..host("0", "0-1", "0-1")
    };
    assert_eq!(cores_verdict(&[1], &unread).status, Status::Warn);
}

#[test]
fn isolation_only_warns() {
    let layout = LayoutConfig::parse("[cores]\nshards = \"0\"\n").unwrap();
    let mut h = host("0-3", "0-3", "0-3");
    let c = isolation_verdict(&layout, &h);
    assert_eq!(c.status, Status::Warn);
    assert!(c.remedy.unwrap().contains("isolcpus=managed_irq,domain,0"));
    h.isolated = Some(vec![0]);
    h.nohz_full = Some(vec![0]);
    assert_eq!(isolation_verdict(&layout, &h).status, Status::Ok);
    // Every CPU a shard: isolating them all would leave the OS nothing.
    let h = host("0", "0", "0");
    let c = isolation_verdict(&layout, &h);
    assert!(c.remedy.unwrap().contains("leave one out"));
}

#[test]
fn cpu_list_text_round_trips() {
    for spec in ["0", "0-3", "0-2,5,7-9", "4095"] {
        let cpus = parse_cpu_list(spec).unwrap();
        assert_eq!(cpu_list_text(&cpus), spec);
    }
    assert_eq!(cpu_list_text(&[3, 1, 2]), "1-3");
    assert_eq!(cpu_list_text(&[]), "none");
}

#[test]
fn ports_name_the_listener_and_the_way_out() {
    let kafka: SocketAddr = "127.0.0.1:9092".parse().unwrap();
    let internal: SocketAddr = "10.9.9.9:9192".parse().unwrap();
    let c = ports_verdict_from(&[("kafka", kafka, Ok(())), ("internal", internal, Ok(()))]);
    assert_eq!(c.status, Status::Ok);
    let c = ports_verdict_from(&[
        ("kafka", kafka, Err(libc::EADDRINUSE)),
        ("internal", internal, Err(libc::EADDRNOTAVAIL)),
    ]);
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("kafka 127.0.0.1:9092"), "{}", c.detail);
    let remedy = c.remedy.unwrap();
    assert!(remedy.contains("broker already running"), "{remedy}");
    assert!(remedy.contains("listeners.internal"), "{remedy}");
    let c = ports_verdict_from(&[("kafka", kafka, Err(libc::EACCES))]);
    assert!(c.remedy.unwrap().contains("CAP_NET_BIND_SERVICE"));
}

#[test]
fn clock_years() {
    assert_eq!(civil_year(0), 1970);
    assert_eq!(civil_year(951_782_400), 2000); // 2000-02-29
    assert_eq!(civil_year(1_735_689_599), 2024); // 2024-12-31T23:59:59Z
    assert_eq!(civil_year(1_735_689_600), 2025);
    assert_eq!(civil_year(-1), 1969);
    assert_eq!(clock_verdict(0, Some(true)).status, Status::Fail);
    assert_eq!(clock_verdict(1_780_000_000, Some(true)).status, Status::Ok);
    assert_eq!(
        clock_verdict(1_780_000_000, Some(false)).status,
        Status::Warn
    );
    assert_eq!(clock_verdict(1_780_000_000, None).status, Status::Ok);
}

#[test]
fn disk_and_o_direct_verdicts() {
    let dir = PathBuf::from("/var/lib/skein");
    let fs = |available_bytes, total_bytes| {
        Ok(Filesystem {
            magic: 0x5846_5342,
            available_bytes,
            total_bytes,
        })
    };
    assert_eq!(
        disk_verdict(&dir, &fs(500 << 30, 1000 << 30)).status,
        Status::Ok
    );
    assert_eq!(
        disk_verdict(&dir, &fs(1 << 30, 1000 << 30)).status,
        Status::Warn
    );
    assert_eq!(
        disk_verdict(&dir, &fs(50 << 30, 1000 << 30)).status,
        Status::Warn
    );
    assert_eq!(disk_verdict(&dir, &fs(0, 0)).status, Status::Warn);
    assert_eq!(
        disk_verdict(&dir, &Err("EIO".to_string())).status,
        Status::Warn
    );
    let xfs = Filesystem {
        magic: 0x5846_5342,
        available_bytes: 0,
        total_bytes: 0,
    };
    let tmpfs = Filesystem {
        magic: 0x0102_1994,
        ..xfs
    };
    let c = o_direct_verdict(Ok(()), Some(&xfs));
    assert_eq!(c.status, Status::Ok);
    assert!(c.detail.contains("xfs"));
    assert_eq!(o_direct_verdict(Ok(()), Some(&tmpfs)).status, Status::Warn);
    let c = o_direct_verdict(Err("EINVAL".into()), Some(&tmpfs));
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("tmpfs"));
    assert!(c.remedy.unwrap().contains("xfs or ext4"));
}

#[test]
fn warns_pass_fails_do_not() {
    let checks = vec![
        Check::ok("config", "parsed"),
        Check::warn("clock", "unsynced", "run chrony"),
    ];
    assert!(passed(&checks));
    let text = render_text(&checks);
    assert!(text.starts_with("OK   config"), "{text}");
    assert!(
        text.contains("WARN clock      unsynced — fix: run chrony"),
        "{text}"
    );
    assert!(text.ends_with("passed: 1 ok, 1 warn, 0 fail\n"), "{text}");
    let mut failing = checks.clone();
    failing.push(Check::fail("ports", "in use", "stop it"));
    assert!(!passed(&failing));
    let json = render_json("x.toml", &failing);
    assert_eq!(json["passed"], false);
    assert_eq!(json["checks"][2]["status"], "fail");
    assert_eq!(json["checks"][0]["remedy"], serde_json::Value::Null);
}
