//! Mutual-exclusion checker for the lock histories of a QEMU cluster run.
//!
//! Each guest's `mxfs-guest lock --witness DISK --history FILE` appends JSON lines:
//! `{"node", "time_ns", "req_id", "resource", "event", "extra"}` with events `request`,
//! `granted`, `release` and `error`. On `granted` and `release` it also records what the
//! *exclusion witness* held: a sector per resource on a shared raw disk, read and written with
//! O_DIRECT. A writer (PW/EX) stamps its token there after its grant and clears it before its
//! release. So the disk, not the node's claim, shows whether two holders overlapped:
//! - at a PR/PW/EX grant the witness must be empty (no writer holds the resource);
//! - at a PW/EX release the witness must still hold the releaser's own token.
//!
//! The checker also requires every grant to be released once, request ids to be unique per
//! node, and, on each node's own clock, no overlap of incompatible holds on one resource.
//!
//! A node the test killed while it held locks (a *lost* node) never releases them, and its
//! token stays on the witness disk. Its unreleased grants are expected, and a later grant that
//! finds exactly such a token is a takeover after recovery, not an overlap: the lost node was
//! fenced and can no longer write.

use std::collections::{BTreeMap, HashMap, HashSet};

pub mod fs;

use serde::Deserialize;

/// One history line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Event {
    /// Node id.
    pub node: u32,
    /// Wall clock of the node, nanoseconds (a string: JSON numbers lose precision).
    pub time_ns: String,
    /// Kernel request id (0 before the grant).
    pub req_id: u64,
    /// Resource, `Kind:volume:a:b`.
    pub resource: String,
    /// `request`, `granted`, `release` or `error`.
    pub event: String,
    /// Mode, witness observation and token.
    #[serde(default)]
    pub extra: serde_json::Value,
}

impl Event {
    fn mode(&self) -> &str {
        self.extra
            .get("mode")
            .and_then(|m| m.as_str())
            .unwrap_or("")
    }
    fn seen(&self) -> Option<u64> {
        self.extra.get("witness_seen").and_then(|v| v.as_u64())
    }
    fn token(&self) -> Option<u64> {
        self.extra.get("token").and_then(|v| v.as_u64())
    }
    fn time(&self) -> u128 {
        self.time_ns.parse().unwrap_or(0)
    }
}

/// A violation, in words that name the events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    /// Granted holds seen, per resource.
    pub holds: BTreeMap<String, usize>,
    /// Errors recorded (denies, timeouts), by errno name.
    pub errors: BTreeMap<String, usize>,
    /// Everything that breaks mutual exclusion or the history's own consistency.
    pub violations: Vec<Violation>,
}

/// Parses JSON lines; a bad line is an error naming its number.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}: {l}", i + 1)))
        .collect()
}

fn is_write(mode: &str) -> bool {
    matches!(mode, "PW" | "EX")
}

fn excludes_writers(mode: &str) -> bool {
    matches!(mode, "PR" | "PW" | "EX")
}

/// DLM compatibility of two modes.
fn compatible(a: &str, b: &str) -> bool {
    const M: [&str; 6] = ["NL", "CR", "CW", "PR", "PW", "EX"];
    const C: [[bool; 6]; 6] = [
        [true, true, true, true, true, true],
        [true, true, true, true, true, false],
        [true, true, true, false, false, false],
        [true, true, false, true, false, false],
        [true, true, false, false, false, false],
        [true, false, false, false, false, false],
    ];
    match (
        M.iter().position(|m| *m == a),
        M.iter().position(|m| *m == b),
    ) {
        (Some(i), Some(j)) => C[i][j],
        _ => false,
    }
}

/// A closed hold on one node: start and end on that node's clock, mode, request id.
type Hold = (u128, u128, String, u64);

/// Checks a whole run's events; `lost` are the nodes the test killed.
pub fn check(events: &[Event], lost: &[u32]) -> Report {
    let mut r = Report::default();
    // Tokens of grants that lost nodes never released.
    let released: HashSet<(u32, u64)> = events
        .iter()
        .filter(|e| e.event == "release")
        .map(|e| (e.node, e.req_id))
        .collect();
    let lost_tokens: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "granted" && lost.contains(&e.node))
        .filter(|e| !released.contains(&(e.node, e.req_id)))
        .filter_map(|e| e.token())
        .collect();
    // (node, req_id) -> grant event
    let mut open: HashMap<(u32, u64), &Event> = HashMap::new();
    // per node and resource: closed intervals (start, end, mode, req_id)
    let mut intervals: HashMap<(u32, String), Vec<Hold>> = HashMap::new();
    let mut seen_ids: HashMap<(u32, u64), usize> = HashMap::new();
    for e in events {
        match e.event.as_str() {
            "granted" => {
                *r.holds.entry(e.resource.clone()).or_default() += 1;
                let n = seen_ids.entry((e.node, e.req_id)).or_default();
                *n += 1;
                if *n > 1 {
                    r.violations.push(Violation(format!(
                        "node {} request {} granted twice",
                        e.node, e.req_id
                    )));
                }
                if excludes_writers(e.mode()) {
                    if let Some(s) = e.seen().filter(|s| *s != 0 && !lost_tokens.contains(s)) {
                        r.violations.push(Violation(format!(
                            "node {} request {} ({} on {}) was granted while the witness held \
                             token {:#x} of node {}: two holders at once",
                            e.node,
                            e.req_id,
                            e.mode(),
                            e.resource,
                            s,
                            s >> 48
                        )));
                    }
                }
                open.insert((e.node, e.req_id), e);
            }
            "release" => match open.remove(&(e.node, e.req_id)) {
                None => r.violations.push(Violation(format!(
                    "node {} released request {} it never was granted",
                    e.node, e.req_id
                ))),
                Some(g) => {
                    if is_write(e.mode()) {
                        if let (Some(seen), Some(tok)) = (e.seen(), e.token()) {
                            if seen != tok {
                                r.violations.push(Violation(format!(
                                    "node {} request {} ({} on {}): the witness held {:#x} \
                                     instead of its own token {:#x} at release: another \
                                     holder wrote meanwhile",
                                    e.node,
                                    e.req_id,
                                    e.mode(),
                                    e.resource,
                                    seen,
                                    tok
                                )));
                            }
                        }
                    }
                    intervals
                        .entry((e.node, e.resource.clone()))
                        .or_default()
                        .push((g.time(), e.time(), g.mode().to_string(), e.req_id));
                }
            },
            "error" => {
                let name = e.extra.get("errno").and_then(|v| v.as_str()).unwrap_or("?");
                *r.errors.entry(name.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
    for ((node, req), g) in open {
        if lost.contains(&node) {
            continue;
        }
        r.violations.push(Violation(format!(
            "node {node} request {req} on {} was granted and never released",
            g.resource
        )));
    }
    for ((node, res), mut iv) in intervals {
        iv.sort();
        for w in iv.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.0 < a.1 && !compatible(&a.2, &b.2) {
                r.violations.push(Violation(format!(
                    "node {node}: requests {} ({}) and {} ({}) on {res} overlap in time",
                    a.3, a.2, b.3, b.2
                )));
            }
        }
    }
    r.violations.sort_by(|a, b| a.0.cmp(&b.0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: u32, t: u64, req: u64, event: &str, mode: &str, seen: u64, token: u64) -> String {
        format!(
            r#"{{"node":{node},"time_ns":"{t}","req_id":{req},"resource":"Inode:0x1:100:0","event":"{event}","extra":{{"mode":"{mode}","witness_seen":{seen},"token":{token}}}}}"#
        )
    }

    fn tok(node: u64, req: u64) -> u64 {
        (node << 48) | req
    }

    #[test]
    fn clean_alternation_passes() {
        let lines = [
            ev(1, 10, 1, "granted", "EX", 0, tok(1, 1)),
            ev(1, 20, 1, "release", "EX", tok(1, 1), tok(1, 1)),
            ev(2, 30, 1, "granted", "EX", 0, tok(2, 1)),
            ev(2, 40, 1, "release", "EX", tok(2, 1), tok(2, 1)),
        ]
        .join("\n");
        let r = check(&parse(&lines).unwrap(), &[]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.holds["Inode:0x1:100:0"], 2);
    }

    #[test]
    fn grant_while_other_holds_is_caught() {
        let lines = [
            ev(1, 10, 1, "granted", "EX", 0, tok(1, 1)),
            ev(2, 12, 1, "granted", "EX", tok(1, 1), tok(2, 1)),
            ev(1, 20, 1, "release", "EX", tok(2, 1), tok(1, 1)),
            ev(2, 40, 1, "release", "EX", 0, tok(2, 1)),
        ]
        .join("\n");
        let r = check(&parse(&lines).unwrap(), &[]);
        assert_eq!(r.violations.len(), 3, "{:?}", r.violations);
        assert!(r
            .violations
            .iter()
            .any(|v| v.0.contains("two holders at once")));
        assert!(r
            .violations
            .iter()
            .any(|v| v.0.contains("another holder wrote")));
    }

    #[test]
    fn unreleased_and_double_grant_are_caught() {
        let lines = [
            ev(1, 10, 7, "granted", "PR", 0, tok(1, 7)),
            ev(1, 11, 7, "granted", "PR", 0, tok(1, 7)),
        ]
        .join("\n");
        let r = check(&parse(&lines).unwrap(), &[]);
        assert!(r.violations.iter().any(|v| v.0.contains("granted twice")));
        assert!(r.violations.iter().any(|v| v.0.contains("never released")));
    }

    #[test]
    fn local_overlap_of_incompatible_modes_is_caught() {
        let lines = [
            ev(1, 10, 1, "granted", "PR", 0, tok(1, 1)),
            ev(1, 15, 2, "granted", "PR", 0, tok(1, 2)),
            ev(1, 20, 1, "release", "PR", 0, tok(1, 1)),
            ev(1, 25, 2, "release", "PR", 0, tok(1, 2)),
        ]
        .join("\n");
        assert!(
            check(&parse(&lines).unwrap(), &[]).violations.is_empty(),
            "PR/PR may overlap"
        );
        let lines = lines.replace("\"PR\"", "\"EX\"");
        let r = check(&parse(&lines).unwrap(), &[]);
        assert!(
            r.violations.iter().any(|v| v.0.contains("overlap in time")),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn lost_node_hold_is_taken_over_not_overlapped() {
        let lines = [
            ev(3, 10, 5, "granted", "EX", 0, tok(3, 5)),
            ev(1, 50, 9, "granted", "EX", tok(3, 5), tok(1, 9)),
            ev(1, 60, 9, "release", "EX", tok(1, 9), tok(1, 9)),
        ]
        .join("\n");
        let events = parse(&lines).unwrap();
        let r = check(&events, &[3]);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // Without the knowledge that node 3 was killed, both are violations.
        let r = check(&events, &[]);
        assert!(r.violations.iter().any(|v| v.0.contains("never released")));
        assert!(r
            .violations
            .iter()
            .any(|v| v.0.contains("two holders at once")));
        // A released hold's token is no excuse, even for a lost node.
        let lines = [
            ev(3, 10, 5, "granted", "EX", 0, tok(3, 5)),
            ev(3, 20, 5, "release", "EX", tok(3, 5), tok(3, 5)),
            ev(1, 50, 9, "granted", "EX", tok(3, 5), tok(1, 9)),
            ev(1, 60, 9, "release", "EX", tok(1, 9), tok(1, 9)),
        ]
        .join("\n");
        let r = check(&parse(&lines).unwrap(), &[3]);
        assert!(
            r.violations
                .iter()
                .any(|v| v.0.contains("two holders at once")),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn bad_line_names_its_number() {
        let e = parse("{\"node\":1}\nnot json").unwrap_err();
        assert!(e.starts_with("line 1"), "{e}");
    }
}
