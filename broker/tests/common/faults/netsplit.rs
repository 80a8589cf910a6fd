//! Cutting one broker off the network, while its process keeps running.
//!
//! Network namespaces don't fit this harness: every node binds 127.0.0.1 and names its peers
//! `127.0.0.1:<port>` in its config, and a process that already runs can't be moved into
//! another namespace. So the victim is cut off on the loopback itself, with nftables:
//!
//! - everything the victim's process sends is dropped: it is moved into a net_cls cgroup
//!   (cgroup v1, mounted here when it is not), which tags its sockets with a class id, the ones
//!   it already has included, and an output rule drops packets with that class id;
//! - everything sent to its Kafka and internal ports is dropped (the other nodes' and the
//!   clients' connections to it), and so is what arrives on its own established sockets (the
//!   same class id, seen on input through TCP early demux).
//!
//! [`NetSplit::heal`] (and dropping it) removes the table, moves the process back to the root
//! net_cls cgroup (which retags its sockets with class id 0), removes the cgroup and unmounts
//! what it mounted. Needs root, the `nft` tool and a kernel with nf_tables and net_cls; when
//! one is missing, [`NetSplit::isolate`] says which, and the scenario is skipped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The class id the victim's sockets get: major 0x5eab, minor 1 (an arbitrary, unlikely pair).
const CLASS_ID: u32 = 0x5eab_0001;

/// One broker cut off; healed on [`NetSplit::heal`] or drop.
pub struct NetSplit {
    table: String,
    /// The net_cls hierarchy and the cgroup in it the victim was moved into.
    hierarchy: PathBuf,
    cgroup: PathBuf,
    /// Set when this split mounted the hierarchy (and so unmounts it).
    mounted: bool,
    pid: u32,
    healed: bool,
}

impl NetSplit {
    /// Cuts the process `pid` listening on `ports` off; Err says what is missing (the caller
    /// skips) or what failed (nothing is left behind).
    pub fn isolate(pid: u32, ports: &[u16]) -> Result<NetSplit, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        run("nft", &["--version"], None).map_err(|e| format!("no usable `nft` tool: {e}"))?;
        let (hierarchy, mounted) = net_cls_hierarchy()?;
        let cgroup = hierarchy.join(format!("skein-faults-{}", std::process::id()));
        let mut split = NetSplit {
            table: format!("skein_faults_{}", std::process::id()),
            hierarchy,
            cgroup,
            mounted,
            pid,
            healed: false,
        };
        // From here on, drop undoes whatever part was done.
        if let Err(e) = split.cut(ports) {
            split.heal();
            return Err(e);
        }
        Ok(split)
    }

    fn cut(&mut self, ports: &[u16]) -> Result<(), String> {
        if !self.cgroup.exists() {
            fs::create_dir(&self.cgroup)
                .map_err(|e| format!("mkdir {}: {e}", self.cgroup.display()))?;
        }
        write_file(&self.cgroup.join("net_cls.classid"), &CLASS_ID.to_string())?;
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        // Priority -10: before any filter chain of the host's own, which might accept first.
        let ruleset = format!(
            "table inet {table} {{\n\
             \x20 chain output {{ type filter hook output priority -10; policy accept;\n\
             \x20   meta cgroup {CLASS_ID:#x} drop\n\
             \x20 }}\n\
             \x20 chain input {{ type filter hook input priority -10; policy accept;\n\
             \x20   tcp dport {{ {ports} }} drop\n\
             \x20   meta cgroup {CLASS_ID:#x} drop\n\
             \x20 }}\n\
             }}\n",
            table = self.table,
            ports = ports.join(", "),
        );
        run("nft", &["-f", "-"], Some(&ruleset)).map_err(|e| format!("nft -f: {e}"))?;
        // Last: moving the process retags the sockets it has, so the cut is at once complete.
        write_file(&self.cgroup.join("cgroup.procs"), &self.pid.to_string())
    }

    /// Undoes the cut; reports (and carries on past) any step that fails, so that the rest is
    /// still undone.
    pub fn heal(&mut self) {
        if self.healed {
            return;
        }
        self.healed = true;
        if let Err(e) = run("nft", &["delete", "table", "inet", &self.table], None) {
            // Absent when the cut failed before creating it.
            if !e.contains("No such file") {
                eprintln!("faults: could not delete nft table {}: {e}", self.table);
            }
        }
        // The process may be gone (killed meanwhile): then the cgroup is empty already.
        let procs = self.hierarchy.join("cgroup.procs");
        if let Err(e) = write_file(&procs, &self.pid.to_string()) {
            if Path::new(&format!("/proc/{}", self.pid)).exists() {
                eprintln!("faults: could not move pid {} back: {e}", self.pid);
            }
        }
        if self.cgroup.exists() {
            if let Err(e) = fs::remove_dir(&self.cgroup) {
                eprintln!("faults: rmdir {}: {e}", self.cgroup.display());
            }
        }
        if self.mounted {
            let target = self.hierarchy.display().to_string();
            match run("umount", &[&target], None) {
                Ok(_) => {
                    let _ = fs::remove_dir(&self.hierarchy);
                }
                Err(e) => eprintln!("faults: umount {target}: {e}"),
            }
        }
    }
}

impl Drop for NetSplit {
    fn drop(&mut self) {
        self.heal();
    }
}

/// A mounted net_cls hierarchy: the system's, or one mounted here on a fresh directory
/// (returned with `true`).
fn net_cls_hierarchy() -> Result<(PathBuf, bool), String> {
    let mounts = fs::read_to_string("/proc/mounts").map_err(|e| format!("/proc/mounts: {e}"))?;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, target, "cgroup", options, ..] = fields.as_slice() {
            if options.split(',').any(|o| o == "net_cls") {
                return Ok((PathBuf::from(target), false));
            }
        }
    }
    let target = std::env::temp_dir().join(format!("skein-net-cls-{}", std::process::id()));
    fs::create_dir_all(&target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
    let target_str = target.display().to_string();
    if let Err(e) = run(
        "mount",
        &[
            "-t",
            "cgroup",
            "-o",
            "net_cls",
            "skein-net-cls",
            &target_str,
        ],
        None,
    ) {
        let _ = fs::remove_dir(&target);
        return Err(format!("cannot mount a net_cls cgroup hierarchy: {e}"));
    }
    Ok((target, true))
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("write {value} to {}: {e}", path.display()))
}

/// Runs `program args`, with `stdin` piped in when given; Err carries its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("{program}: writing its input: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
