//! Three real `mxfsd` processes on loopback: exclusion, BAST handoff, CACHE_INVAL ordering,
//! kill -9 with fencing and recovery, partition, restart, wrong key, garbage input.

mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

fn granted(v: &Value) -> bool {
    v["reply"] == "granted"
}

#[test]
fn exclusion_and_bast_handoff() {
    let c = Cluster::start(3);
    let r = "inode:1:100";
    assert!(granted(&c.node(1).ctl(&["lock", r, "EX"])), "node 1 EX");
    // Node 2 blocks behind node 1; node 3's trylock is denied with EAGAIN.
    let mut waiter = c.node(2).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 400);
    let d = c.node(3).ctl(&["lock", r, "PR", "--noqueue"]);
    assert_eq!(d["reply"], "denied", "{d}");
    assert_eq!(d["errno"], -11, "{d}");
    // The master shows node 1 granted EX and node 2 waiting.
    let master = (1..=3)
        .map(|i| c.node(i).ctl(&["locks"]))
        .find(|l| {
            l["master"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x["resource"] == r))
        })
        .expect("some node masters the resource");
    let res = master["master"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == r)
        .unwrap();
    assert_eq!(res["granted"][0]["who"], "node1", "{res}");
    assert_eq!(res["granted"][0]["mode"], "EX", "{res}");
    assert_eq!(res["waiting"][0]["who"], "node2", "{res}");
    // An interrupted `mxfsctl lock` (killed while waiting) leaves no request behind.
    let mut quitter = c.node(3).lock_bg(r, "PR", &[]);
    let waiting_on_master = |who: &str| {
        let l = (1..=3).map(|i| c.node(i).ctl(&["locks"])).find_map(|l| {
            l["master"]
                .as_array()?
                .iter()
                .find(|x| x["resource"] == r)
                .cloned()
        });
        let l = l.expect("resource still mastered");
        l["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["who"] == who)
    };
    wait_for("node 3 queued on the master", WAIT_MS, || {
        waiting_on_master("node3").then_some(())
    });
    quitter.kill().unwrap();
    quitter.wait().unwrap();
    wait_for("node 3's request withdrawn", WAIT_MS, || {
        (!waiting_on_master("node3")).then_some(())
    });
    // Node 1 still holds it (ctl locks stay held), and gets a BAST for node 2's request.
    still_blocked(&mut waiter, 200);
    let local = c.node(1).ctl(&["locks"]);
    let l = local["local"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == r)
        .unwrap()
        .clone();
    assert_eq!(l["held"], "EX", "{l}");
    assert_eq!(l["bast_pending"], true, "{l}");
    // Unlock hands the lock over.
    let u = c.node(1).ctl(&["unlock", r]);
    assert_eq!(u["reply"], "unlocked", "{u}");
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    assert!(g["waited_ms"].as_u64().unwrap() >= 400, "{g}");
    // And now node 1 is the one that waits.
    let d = c.node(1).ctl(&["lock", r, "PR", "--timeout-ms", "300"]);
    assert_eq!(d["reply"], "denied", "{d}");
    assert_eq!(d["errno"], -110, "{d}");
    let top = c
        .node(2)
        .ctl_output(&["top", "--iterations", "2", "--interval-ms", "50"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&top.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "two refreshes");
    let first = lines[0]["lines"].as_array().unwrap();
    let line = first
        .iter()
        .find(|l| l["resource"] == r)
        .expect("resource in top");
    assert_eq!(line["grants_total"], 1, "{line}");
    assert_eq!(line["waits_total"], 1, "node 2 waited > 5 ms: {line}");
}

/// A grant after a remote write is preceded by CACHE_INVAL for that inode in the kernel-bound
/// stream; a re-grant with no write in between is not.
#[test]
fn cache_inval_comes_before_grant() {
    let c = Cluster::start(3);
    let r = "inode:1:200";
    assert!(granted(&c.node(1).ctl(&["lock", r, "EX"])));
    c.node(1).ctl(&["unlock", r]);
    let g = c.node(2).ctl(&["lock", r, "PR"]);
    assert!(granted(&g), "{g}");
    let ev = c.node(2).events();
    let gi = ev
        .iter()
        .position(|e| e["kind"] == "grant" && e["req_id"] == g["req_id"])
        .expect("grant logged");
    assert!(gi > 0, "{ev:?}");
    assert_eq!(ev[gi - 1]["kind"], "cache_inval", "events: {ev:?}");
    assert_eq!(ev[gi - 1]["resource"], "inode:1:200", "events: {ev:?}");
    // Release and take again with no writer in between: the cache stays valid.
    c.node(2).ctl(&["unlock", r]);
    let g2 = c.node(2).ctl(&["lock", r, "PR"]);
    assert!(granted(&g2), "{g2}");
    let ev = c.node(2).events();
    let gi = ev
        .iter()
        .position(|e| e["kind"] == "grant" && e["req_id"] == g2["req_id"])
        .unwrap();
    assert_ne!(
        ev[gi - 1]["kind"],
        "cache_inval",
        "needless invalidation: {ev:?}"
    );
}

#[test]
fn kill9_holder_is_fenced_and_waiter_granted() {
    let mut c = Cluster::start(3);
    let r = "inode:1:300";
    assert!(granted(&c.node(2).ctl(&["lock", r, "EX"])));
    let mut waiter = c.node(1).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 300);
    c.node_mut(2).kill9();
    let g = finish(waiter, WAIT_MS);
    if !granted(&g) {
        c.dump_logs();
    }
    assert!(granted(&g), "{g}");
    assert_eq!(
        c.fenced().lines().filter(|l| l.starts_with("2 n2")).count(),
        1,
        "one fence agent run (by the fencer, node 1), fence log: {:?}",
        c.fenced()
    );
    c.wait_members(&[1, 3], &[1, 3]);
    let s = c.node(1).status();
    let rec = s["recoveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lost"] == serde_json::json!([2]));
    let rec = rec.unwrap_or_else(|| panic!("no recovery of node 2 in {s}"));
    assert!(rec["duration_ms"].is_u64(), "{rec}");
    for part in ["fence_ms", "replay_ms", "remaster_ms"] {
        assert!(rec[part].is_u64(), "{part}: {rec}");
    }
    assert_eq!(s["fencer"], 1, "{s}");
    assert_eq!(s["awaiting_fence"], serde_json::json!([]), "{s}");
    assert_eq!(s["awaiting_replay"], serde_json::json!([]), "{s}");
    // The fencer replayed node 2's journal once, in the recovery of epoch 2.
    assert_eq!(c.replayed(), "2 n2 2\n", "replay log");
    assert!(
        c.node(1).log_text().contains("replay_ms"),
        "the recovery's phases are logged"
    );
}

/// The fencer replays a lost node's journal after its fence and before anything resumes: a
/// failed replay keeps every survivor frozen (status and metrics say so) and is retried; the
/// waiter is granted only after the replay succeeded.
#[test]
fn failed_journal_replay_keeps_recovery_frozen_until_the_retry_succeeds() {
    let mut c = Cluster::start(3);
    let r = "inode:1:800";
    assert!(granted(&c.node(2).ctl(&["lock", r, "EX"])));
    c.hold_replays(true);
    c.fail_next_replay();
    let mut waiter = c.node(3).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 300);
    c.node_mut(2).kill9();
    let s = wait_for("node 1 to replay node 2's journal", WAIT_MS, || {
        let s = c.node(1).status();
        (s["replaying"] == serde_json::json!([2])).then_some(s)
    });
    assert_eq!(s["phase"], "Replaying", "{s}");
    assert_eq!(s["awaiting_replay"], serde_json::json!([2]), "{s}");
    let out = std::process::Command::new(MXFSCTL)
        .arg("--socket")
        .arg(&c.node(1).sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("journal replay: waiting for [2] (replayer node 1); this node replays [2]"),
        "{text}"
    );
    // The held replay fails when released; nothing is granted meanwhile.
    c.hold_replays(false);
    wait_for("the failed replay to be logged", WAIT_MS, || {
        c.node(1)
            .log_text()
            .contains("journal replay FAILED")
            .then_some(())
    });
    still_blocked(&mut waiter, 300);
    assert!(c.replayed().is_empty(), "{}", c.replayed());
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    assert_eq!(c.replayed(), "2 n2 2\n", "the retry replayed it once");
    let s = c.node(1).status();
    let rec = s["recoveries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(rec["replay_failures"], 1, "{rec}");
    assert!(
        rec["replay_ms"].as_u64().unwrap() >= mxfs_core::REPLAY_RETRY_DELAY_MS,
        "{rec}"
    );
}

/// A lock-only cluster (`shared_journals = false`) has nothing to replay: recovery goes on
/// without running any command.
#[test]
fn lock_only_cluster_needs_no_replay_command() {
    let mut c = Cluster::configure(3, |_| "good");
    c.lock_only();
    for node in &mut c.nodes {
        node.start();
    }
    c.wait_members(&[1, 2, 3], &[1, 2, 3]);
    let r = "inode:1:900";
    assert!(granted(&c.node(2).ctl(&["lock", r, "EX"])));
    let waiter = c.node(1).lock_bg(r, "EX", &[]);
    c.node_mut(2).kill9();
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    assert!(c.replayed().is_empty(), "{}", c.replayed());
    assert!(
        c.node(1).log_text().contains("no shared journals"),
        "the replay step is logged"
    );
}

/// While the fencer's agent runs, the other survivors wait for its word and say so: `status`
/// names the node awaiting its fence and the fencer, and nothing is granted until the one
/// agent run confirms.
#[test]
fn survivors_wait_for_the_fencers_agent_and_status_says_so() {
    let mut c = Cluster::start(3);
    let r = "inode:1:700";
    assert!(granted(&c.node(2).ctl(&["lock", r, "EX"])));
    c.hold_fences(true);
    let mut waiter = c.node(3).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 300);
    c.node_mut(2).kill9();
    let s = wait_for("node 3 to wait for the fence of node 2", WAIT_MS, || {
        let s = c.node(3).status();
        (s["awaiting_fence"] == serde_json::json!([2])).then_some(s)
    });
    assert_eq!(s["fencer"], 1, "{s}");
    assert_eq!(s["phase"], "Fencing", "{s}");
    let out = std::process::Command::new(MXFSCTL)
        .arg("--socket")
        .arg(&c.node(3).sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fencing: waiting for [2] (fencer node 1)"),
        "{text}"
    );
    still_blocked(&mut waiter, 300);
    assert!(c.fenced().is_empty(), "the agent is still held");
    c.hold_fences(false);
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    assert_eq!(c.fenced(), "2 n2\n", "one agent run");
}

#[test]
fn partition_minority_stops_majority_recovers_and_restart_rejoins() {
    let mut c = Cluster::start(3);
    let r = "ag:1:0";
    assert!(granted(&c.node(1).ctl(&["lock", r, "EX"])));
    let mut waiter = c.node(2).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 300);
    assert_eq!(c.node(1).ctl(&["isolate", "on"])["reply"], "ok");
    // The majority fences node 1 and grants its lock to the waiter.
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    assert_eq!(
        c.fenced().lines().filter(|l| l.starts_with("1 n1")).count(),
        1,
        "one fence agent run (by the fencer, node 2), fence log: {:?}",
        c.fenced()
    );
    c.wait_members(&[2, 3], &[2, 3]);
    // The minority grants nothing.
    let s = wait_for("node 1 to lose quorum", WAIT_MS, || {
        let s = c.node(1).status();
        (s["quorum"] == false && s["self_fenced"] == true).then_some(s)
    });
    assert_eq!(s["phase"], "Stopped", "{s}");
    let d = c
        .node(1)
        .ctl(&["lock", "ag:1:9", "PR", "--timeout-ms", "2000"]);
    assert_eq!(d["reply"], "denied", "{d}");
    assert_eq!(d["errno"], -37, "{d}");
    // Healing the link does not let the stale node back in...
    c.node(1).ctl(&["isolate", "off"]);
    std::thread::sleep(Duration::from_millis(3 * HEARTBEAT_TIMEOUT_MS));
    assert_eq!(c.node(2).members(), Some(vec![2, 3]));
    let s2 = c.node(2).status();
    let p1 = s2["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == 1)
        .unwrap()
        .clone();
    assert_eq!(
        p1["fenced"], true,
        "node 2 sees node 1 announce its self-fence: {s2}"
    );
    // ...restarting it does.
    c.node_mut(1).kill9();
    c.node_mut(1).start();
    c.wait_members(&[1, 2, 3], &[1, 2, 3]);
    let d = c.node(1).ctl(&["lock", r, "PR", "--noqueue"]);
    assert_eq!(d["errno"], -11, "node 2 still holds EX: {d}");
    c.node(2).ctl(&["unlock", r]);
    assert!(granted(&c.node(1).ctl(&["lock", r, "PR"])));
}

/// A recovery message lost in transit would stall recovery forever; the coordinator restarts
/// the recovery in a new epoch after `RECOVERY_STALL_TIMEOUTS` heartbeat timeouts.
#[test]
fn lost_recovery_message_is_recovered_by_the_stall_watchdog() {
    let mut c = Cluster::start(3);
    let r = "inode:1:500";
    assert!(granted(&c.node(2).ctl(&["lock", r, "EX"])));
    let mut waiter = c.node(1).lock_bg(r, "EX", &[]);
    still_blocked(&mut waiter, 300);
    // Node 3's next lock-core messages are its `Journals` report and its `FenceAsk` to the
    // fencer (node 1, which fences node 2 on its own anyway); node 1 starts no replay before
    // that report.
    assert_eq!(c.node(3).ctl(&["drop-core", "2"])["reply"], "ok");
    c.node_mut(2).kill9();
    let g = finish(waiter, WAIT_MS + 10 * HEARTBEAT_TIMEOUT_MS);
    assert!(granted(&g), "{g}");
    let log = c.node(3).log_text();
    assert!(
        log.contains("lock-core message dropped"),
        "the hook fired:\n{log}"
    );
    let log1 = c.node(1).log_text();
    assert!(
        log1.contains("recovery stalled; restarting it"),
        "watchdog fired:\n{log1}"
    );
    c.wait_members(&[1, 3], &[1, 3]);
    let e1 = c.node(1).status()["epoch"].as_u64().unwrap();
    assert!(e1 >= 3, "a second epoch was installed: {e1}");
}

/// A link that drops a lock request and heals before the heartbeat timeout: no membership
/// change, but the node that lost the message asks for a resync, the coordinator reinstalls
/// the view, recovery resends the waiting request, and it is granted.
#[test]
fn message_lost_on_a_healed_link_is_resent_by_a_resync() {
    use mxfs_core::{master_of, NodeSet, ResourceId};
    let c = Cluster::start(3);
    let all = NodeSet::EMPTY.with(1).with(2).with(3);
    let ino = (600..)
        .find(|i| master_of(all, &ResourceId::inode(1, *i)) == Some(3))
        .unwrap();
    let r = format!("inode:1:{ino}");
    assert!(granted(&c.node(1).ctl(&["lock", &r, "EX"])));
    let epoch = c.node(1).status()["epoch"].as_u64().unwrap();
    assert_eq!(c.node(2).ctl(&["isolate", "on"])["reply"], "ok");
    let mut waiter = c.node(2).lock_bg(&r, "EX", &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.node(2).ctl(&["isolate", "off"])["reply"], "ok");
    still_blocked(&mut waiter, 200);
    c.node(1).ctl(&["unlock", &r]);
    let g = finish(waiter, WAIT_MS);
    if !granted(&g) {
        c.dump_logs();
    }
    assert!(granted(&g), "{g}");
    let s = c.node(1).status();
    assert!(
        s["epoch"].as_u64().unwrap() > epoch,
        "a resync epoch was installed: {s}"
    );
    assert_eq!(
        s["members"],
        serde_json::json!([1, 2, 3]),
        "nobody was fenced: {s}"
    );
    assert!(c.fenced().is_empty(), "fence log: {}", c.fenced());
}

#[test]
fn sigterm_releases_and_restart_rejoins() {
    let mut c = Cluster::start(3);
    let r = "extent:1:5:0";
    assert!(granted(&c.node(3).ctl(&["lock", r, "EX"])));
    let st = c.node_mut(3).terminate();
    assert!(st.success(), "mxfsd exit status {st}");
    c.wait_members(&[1, 2], &[1, 2]);
    // A clean stop (nothing held by a kernel) is a leave, not a failure: nobody fences it.
    let log3 = c.node(3).log_text();
    assert!(
        log3.contains("left the cluster cleanly"),
        "node 3 log:\n{log3}"
    );
    let s1 = c.node(1).status();
    assert_eq!(
        s1["recoveries"].as_array().unwrap().last().unwrap()["lost"],
        serde_json::json!([3]),
        "{s1}"
    );
    assert!(c.fenced().is_empty(), "fence log: {}", c.fenced());
    assert!(granted(&c.node(1).ctl(&[
        "lock",
        r,
        "EX",
        "--timeout-ms",
        "10000"
    ])));
    c.node_mut(3).start();
    c.wait_members(&[1, 2, 3], &[1, 2, 3]);
    let d = c.node(3).ctl(&["lock", r, "PR", "--noqueue"]);
    assert_eq!(d["errno"], -11, "{d}");
    c.node(1).ctl(&["unlock", r]);
    assert!(granted(&c.node(3).ctl(&[
        "lock",
        r,
        "PR",
        "--timeout-ms",
        "10000"
    ])));
}

#[test]
fn peer_with_wrong_key_is_refused() {
    let mut c = Cluster::configure(3, |id| if id == 3 { "evil" } else { "good" });
    for n in &mut c.nodes {
        n.start();
    }
    c.wait_members(&[1, 2], &[1, 2]);
    std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_TIMEOUT_MS));
    assert_eq!(c.node(1).members(), Some(vec![1, 2]));
    let s3 = c.node(3).status();
    assert_eq!(s3["quorum"], false, "{s3}");
    let log = c.node(1).log_text();
    assert!(
        log.contains("failed the cluster-key challenge"),
        "node 1 log:\n{log}"
    );
}

#[test]
fn garbage_on_peer_port_and_ctl_socket_is_refused() {
    let c = Cluster::start(3);
    let n1 = c.node(1);
    // Peer port: raw garbage, a huge length prefix, a well-framed garbage frame.
    let inputs: [&[u8]; 3] = [
        b"GET / HTTP/1.0\r\n\r\n",
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        &[
            0, 0, 0, 50, b'M', b'X', b'F', b'P', 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3,
        ],
    ];
    for inp in inputs {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", n1.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(inp);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // the daemon closes the connection
    }
    // Ctl socket: bad JSON, an unknown command, a bad resource, binary junk, an overlong line.
    let mut s = std::os::unix::net::UnixStream::connect(&n1.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    for line in [
        "not json",
        r#"{"cmd":"explode"}"#,
        r#"{"cmd":"lock","resource":"inode:1","mode":"EX"}"#,
        r#"{"cmd":"lock","resource":"inode:1:2","mode":"XX"}"#,
        r#"{"cmd":"unlock","resource":"ag:1:1"}"#,
    ] {
        writeln!(s, "{line}").unwrap();
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut r, &mut reply).unwrap();
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["reply"], "error", "{line} -> {v}");
    }
    let mut s2 = std::os::unix::net::UnixStream::connect(&n1.sock).unwrap();
    let _ = s2.write_all(&[0xc3, 0x28, 0xff, b'\n']);
    let _ = s2.write_all(&vec![b'x'; 100 * 1024]);
    drop(s2);
    // Still serving, still a member, still granting.
    assert_eq!(n1.members(), Some(vec![1, 2, 3]));
    assert!(granted(&n1.ctl(&["lock", "inode:9:9", "EX"])));
    let log = n1.log_text();
    assert!(
        log.contains("peer refused") || log.contains("inbound peer connection closed"),
        "{log}"
    );
    // Metrics: garbage gets a 400, a GET gets the counters, including the refused frames.
    let http = |req: &[u8]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", n1.metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(http(b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.0 400"));
    let m = http(b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(m.starts_with("HTTP/1.0 200"), "{m}");
    assert!(m.contains("mxfs_grants_total 1\n"), "{m}");
    assert!(m.contains("mxfs_members 3\n"), "{m}");
    let bad: u64 = ["mxfs_peer_auth_failures ", "mxfs_peer_bad_frames "]
        .iter()
        .map(|k| {
            m.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(bad >= 3, "three bad peer connections counted: {m}");
}

#[test]
fn bad_config_names_the_field_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "node_id = 1\npeers = [{ id = 1, address = \"127.0.0.1:1\" }]\n\
         cluster_key_file = \"/k\"\nfence_command = [\"/bin/true\"]\nctl_socket = \"/s\"\n\
         heartbeat_interval_ms = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(MXFSD)
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("heartbeat_interval_ms"), "{err}");
    std::fs::write(&p, "node_id = 1\nbogus_field = 2\n").unwrap();
    let out = std::process::Command::new(MXFSD)
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_field"));
}

/// With `kernel = "netlink"` and no module loaded, mxfsd says so and does not start.
#[test]
fn netlink_without_module_is_a_clear_error() {
    if std::path::Path::new("/sys/module/mxfs").exists() {
        eprintln!("mxfs.ko is loaded on this machine; nothing to check");
        return;
    }
    let c = Cluster::configure(1, |_| "good");
    let cfg = std::fs::read_to_string(&c.node(1).config).unwrap();
    std::fs::write(
        &c.node(1).config,
        cfg.replace("kernel = \"none\"", "kernel = \"netlink\""),
    )
    .unwrap();
    let out = std::process::Command::new(MXFSD)
        .arg("--config")
        .arg(&c.node(1).config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mxfs genetlink family not found: is mxfs.ko loaded?"),
        "{err}"
    );
}

/// First mounter (issue 11 item 3): two of three daemons start fresh while the third is
/// down. None knows the journals, so the fencer (node 1) fences node 3 and replays all three
/// journals before it grants anything; `mxfsctl status` says so.
#[test]
fn first_mounter_fences_the_absent_node_and_replays_every_journal_before_granting() {
    let mut c = Cluster::configure(3, |_| "good");
    c.hold_replays(true);
    for node in &mut c.nodes[..2] {
        node.start();
    }
    let s = wait_for("node 1 to replay every journal", 2 * WAIT_MS, || {
        // The ctl socket may not be up yet right after the start.
        let out = c.node(1).ctl_output(&["status"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        (s["replaying"] == serde_json::json!([1, 2, 3])).then_some(s)
    });
    assert_eq!(s["phase"], "Replaying", "{s}");
    assert_eq!(s["journals_known"], false, "{s}");
    assert_eq!(s["awaiting_replay"], serde_json::json!([1, 2, 3]), "{s}");
    let out = std::process::Command::new(MXFSCTL)
        .arg("--socket")
        .arg(&c.node(1).sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("first mounter: no member knows the journals"),
        "{text}"
    );
    assert!(
        text.contains("journal replay: waiting for [1, 2, 3] (replayer node 1)"),
        "{text}"
    );
    let mut waiter = c.node(2).lock_bg("inode:1:1000", "EX", &[]);
    still_blocked(&mut waiter, 300);
    assert_eq!(
        c.fenced().lines().filter(|l| l.starts_with("3 n3")).count(),
        1,
        "the absent node is fenced once: {:?}",
        c.fenced()
    );
    c.hold_replays(false);
    let g = finish(waiter, WAIT_MS);
    assert!(granted(&g), "{g}");
    let log = c.replayed();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    let nodes: Vec<&str> = lines.iter().map(|l| &l[..4]).collect();
    assert_eq!(nodes, ["1 n1", "2 n2", "3 n3"], "{lines:?}");
    assert_eq!(c.node(1).status()["journals_known"], true);
}
