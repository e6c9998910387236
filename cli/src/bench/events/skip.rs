//! Peers a run leaves out because this machine cannot run them (a peer
//! that needs kernel BTF, on a kernel without), and why: said on stderr as the run starts, as
//! a JSON line (`"bench":"events-skip"`) with `--json`, and under the
//! tables, so that a missing peer is never a silent one.

use std::fmt::Write as _;

use crate::bench::peer::{
    self,
    EventsPeer, //
};
use anyhow::{
    Context,
    Result, //
};

/// A peer left out, and why.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Skipped {
    pub(super) peer: EventsPeer,
    pub(super) reason: String,
}

impl Skipped {
    /// The peers of `peers` that this machine cannot run.
    pub(super) fn find(peers: &[EventsPeer]) -> Vec<Self> {
        peers
            .iter()
            .filter_map(|&peer| {
                let reason = missing(peer)?;
                Some(Self { peer, reason })
            })
            .collect()
    }

    /// `PEER: REASON`.
    pub(super) fn describe(&self) -> String {
        format!("{}: {}", self.peer, self.reason)
    }

    /// The JSON line (`"bench":"events-skip"`).
    pub(super) fn to_json(&self) -> impl serde::Serialize + '_ {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            bench: &'static str,
            peer: &'static str,
            reason: &'a str,
        }
        Json {
            bench: "events-skip",
            peer: self.peer.name(),
            reason: &self.reason,
        }
    }

    pub(super) fn from_json(v: &serde_json::Value) -> Result<Self> {
        let text = |k: &str| v[k].as_str().with_context(|| format!("no {k} in {v}"));
        Ok(Self {
            peer: peer::find_events(text("peer")?)
                .with_context(|| format!("no such peer in {v}"))?,
            reason: text("reason")?.to_owned(),
        })
    }
}

/// Why this machine cannot run `peer`, if it cannot: what it needs and
/// the machine lacks (a kernel's BTF).
fn missing(peer: EventsPeer) -> Option<String> {
    #[cfg(feature = "bpf")]
    if peer.needs(peer::Need::Btf) {
        return super::bpf::btf_missing();
    }
    let _ = peer;
    None
}

/// The lines under the tables: `Not measured: PEER: REASON`, one a peer.
pub(super) fn describe(skipped: &[Skipped]) -> String {
    let mut out = String::new();
    if !skipped.is_empty() {
        out.push('\n');
    }
    for skip in skipped {
        let _ = writeln!(out, "Not measured: {}", skip.describe());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_survive_json() {
        let skip = Skipped {
            peer: peer::find_events("bpf-btf").unwrap(),
            reason: "this kernel has no BTF".to_owned(),
        };
        let line = serde_json::to_value(skip.to_json()).unwrap();
        assert_eq!(line["bench"], "events-skip");
        assert_eq!(line["peer"], "bpf-btf");
        assert_eq!(Skipped::from_json(&line).unwrap(), skip);
        assert_eq!(
            describe(&[skip]),
            "\nNot measured: bpf-btf: this kernel has no BTF\n"
        );
        assert_eq!(describe(&[]), "");
    }

    #[test]
    fn only_a_peer_this_machine_lacks_is_skipped() {
        let find = |names: &[&str]| {
            let peers: Vec<EventsPeer> = names
                .iter()
                .map(|n| peer::find_events(n).unwrap())
                .collect();
            Skipped::find(&peers)
        };
        let skipped = find(&["none", "rmemring", "ftrace"]);
        assert_eq!(skipped, []);
        #[cfg(feature = "bpf")]
        {
            let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
            let skipped = find(&["bpf", "bpf-btf"]);
            let peers: Vec<&str> = skipped.iter().map(|s| s.peer.name()).collect();
            assert_eq!(peers, if btf { vec![] } else { vec!["bpf-btf"] });
        }
    }
}
