// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! A reader of flattened device trees (the DTB format of the Devicetree
//! Specification, chapter 5): as much of it as the checks and the
//! expectations need. It is ours rather than libfdt's so that the unit
//! tests, which build their trees in memory, need no dtc.
//!
//! Property names are C strings, as in the kernel's lookups, so that the
//! names `rmemring_proto::devicetree` gives the driver serve here unchanged.

use std::ffi::CStr;
use std::path::Path;

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use rmemring_proto::devicetree::COMPATIBLE;

/// One node: its properties in the order of the blob, its children by index.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) parent: Option<usize>,
    pub(super) props: Vec<(String, Vec<u8>)>,
    pub(super) children: Vec<usize>,
}

impl Node {
    pub(super) fn prop(&self, name: &CStr) -> Option<&[u8]> {
        self.props
            .iter()
            .find(|(n, _)| n.as_bytes() == name.to_bytes())
            .map(|(_, v)| v.as_slice())
    }

    pub(super) fn u32(&self, name: &CStr) -> Option<u32> {
        let v = self.prop(name)?;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }

    /// A string property's first string, as the kernel reads it.
    pub(super) fn bytes(&self, name: &CStr) -> Option<&[u8]> {
        self.prop(name)?.split(|b| *b == 0).next()
    }

    /// [`Node::bytes`] as text.
    pub(super) fn str(&self, name: &CStr) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes(name)?).into_owned())
    }

    fn strings(&self, name: &CStr) -> impl Iterator<Item = &[u8]> {
        self.prop(name)
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
    }

    fn enabled(&self) -> bool {
        self.str(c"status").is_none_or(|s| s == "okay" || s == "ok")
    }
}

/// A parsed tree; node 0 is the root.
#[derive(Debug, Default)]
pub(super) struct Fdt {
    pub(super) nodes: Vec<Node>,
    /// The `/memreserve/` entries: (address, size).
    pub(super) memreserve: Vec<(u64, u64)>,
}

pub(super) const FDT_MAGIC: u32 = 0xd00d_feed;
pub(super) const FDT_BEGIN_NODE: u32 = 1;
pub(super) const FDT_END_NODE: u32 = 2;
pub(super) const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
pub(super) const FDT_END: u32 = 9;

fn be32(blob: &[u8], at: usize) -> Result<u32> {
    let b = blob.get(at..at + 4).context("DTB truncated")?;
    Ok(u32::from_be_bytes(b.try_into()?))
}

fn be64(blob: &[u8], at: usize) -> Result<u64> {
    Ok((u64::from(be32(blob, at)?) << 32) | u64::from(be32(blob, at + 4)?))
}

fn cstr(blob: &[u8], at: usize) -> Result<&[u8]> {
    let rest = blob.get(at..).context("DTB string out of range")?;
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .context("DTB string not terminated")?;
    Ok(&rest[..end])
}

impl Fdt {
    pub(super) fn read(path: &Path) -> Result<Self> {
        let blob = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&blob).with_context(|| format!("parsing {}", path.display()))
    }

    pub(super) fn parse(blob: &[u8]) -> Result<Self> {
        ensure!(
            be32(blob, 0)? == FDT_MAGIC,
            "not a flattened device tree (bad magic)"
        );
        let total = be32(blob, 4)? as usize;
        ensure!(
            total <= blob.len(),
            "DTB header says {total} bytes, file has {}",
            blob.len()
        );
        let blob = &blob[..total];
        let off_struct = be32(blob, 8)? as usize;
        let off_strings = be32(blob, 12)? as usize;
        let off_rsvmap = be32(blob, 16)? as usize;
        ensure!(be32(blob, 20)? >= 16, "DTB version below 16");

        let mut tree = Fdt::default();
        let mut at = off_rsvmap;
        loop {
            let (addr, size) = (be64(blob, at)?, be64(blob, at + 8)?);
            at += 16;
            if addr == 0 && size == 0 {
                break;
            }
            tree.memreserve.push((addr, size));
        }

        let mut at = off_struct;
        let mut stack: Vec<usize> = Vec::new();
        loop {
            let token = be32(blob, at)?;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let name = cstr(blob, at)?;
                    at += (name.len() + 1).next_multiple_of(4);
                    let idx = tree.nodes.len();
                    let parent = stack.last().copied();
                    tree.nodes.push(Node {
                        name: String::from_utf8_lossy(name).into_owned(),
                        parent,
                        ..Node::default()
                    });
                    if let Some(p) = parent {
                        tree.nodes[p].children.push(idx);
                    }
                    stack.push(idx);
                }
                FDT_END_NODE => {
                    stack.pop().context("unbalanced FDT_END_NODE")?;
                }
                FDT_PROP => {
                    let len = be32(blob, at)? as usize;
                    let name_off = be32(blob, at + 4)? as usize;
                    let value = blob
                        .get(at + 8..at + 8 + len)
                        .context("property value out of range")?
                        .to_vec();
                    at += 8 + len.next_multiple_of(4);
                    let name =
                        String::from_utf8_lossy(cstr(blob, off_strings + name_off)?).into_owned();
                    let node = *stack.last().context("property outside any node")?;
                    tree.nodes[node].props.push((name, value));
                }
                FDT_NOP => {}
                FDT_END => break,
                other => bail!("unknown DTB token {other:#x} at offset {}", at - 4),
            }
        }
        ensure!(
            stack.is_empty() && !tree.nodes.is_empty(),
            "DTB structure block is unbalanced"
        );
        Ok(tree)
    }

    pub(super) fn node(&self, idx: usize) -> &Node {
        &self.nodes[idx]
    }

    pub(super) fn child(&self, node: &Node, name: &str) -> Option<usize> {
        node.children
            .iter()
            .copied()
            .find(|c| self.nodes[*c].name == name)
    }

    pub(super) fn path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if self.nodes[i].parent.is_some() {
                parts.push(self.nodes[i].name.as_str());
            }
            cur = self.nodes[i].parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    pub(super) fn by_phandle(&self, phandle: u32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.u32(c"phandle").or_else(|| n.u32(c"linux,phandle")) == Some(phandle))
    }

    /// Enabled nodes compatible with the binding, in tree order (the order
    /// in which Linux creates their platform devices).
    pub(super) fn rings(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                let node = &self.nodes[*i];
                node.enabled()
                    && node
                        .strings(c"compatible")
                        .any(|c| c == COMPATIBLE.to_bytes())
            })
            .collect()
    }

    /// `#address-cells`/`#size-cells` a node gives its children (the
    /// Devicetree Specification's defaults are 2 and 1).
    pub(super) fn cells(&self, node: usize) -> (u32, u32) {
        let n = &self.nodes[node];
        (
            n.u32(c"#address-cells").unwrap_or(2),
            n.u32(c"#size-cells").unwrap_or(1),
        )
    }

    /// A node's `reg` entries as (address, size), in its parent's cells.
    pub(super) fn reg(&self, node: usize) -> Option<Vec<(u64, u64)>> {
        let parent = self.nodes[node].parent?;
        let (ac, sc) = self.cells(parent);
        let raw = self.nodes[node].prop(c"reg")?;
        let words: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("chunk of 4")))
            .collect();
        let (ac, sc) = (ac as usize, sc as usize);
        if ac == 0
            || ac > 2
            || sc > 2
            || !raw.len().is_multiple_of(4)
            || !words.len().is_multiple_of(ac + sc)
        {
            return None;
        }
        let num = |w: &[u32]| w.iter().fold(0u64, |acc, x| (acc << 32) | u64::from(*x));
        Some(
            words
                .chunks_exact(ac + sc)
                .map(|e| (num(&e[..ac]), num(&e[ac..])))
                .collect(),
        )
    }

    /// Whether `[base, base + size)` lies in one range of a root
    /// `device_type = "memory"` node: RAM the kernel knows.
    pub(super) fn in_memory(&self, base: u64, size: u64) -> bool {
        self.node(0)
            .children
            .iter()
            .filter(|c| self.node(**c).bytes(c"device_type") == Some(b"memory"))
            .filter_map(|c| self.reg(*c))
            .flatten()
            .any(|(start, len)| {
                start <= base && base.saturating_add(size) <= start.saturating_add(len)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        board_blob,
        GOOD, //
    };
    use super::*;

    #[test]
    fn the_reader_reads_what_it_should() {
        let blob = board_blob(&[GOOD], &[(1, Some("x"))], &[(0x4000_0000, 0x1000)]);
        let tree = Fdt::parse(&blob).expect("parses");
        assert_eq!(tree.memreserve, vec![(0x4000_0000, 0x1000)]);
        let rings = tree.rings();
        assert_eq!(rings.len(), 1);
        assert_eq!(tree.path(rings[0]), "/rmemring-0");
        let region = tree.by_phandle(1).expect("phandle 1");
        assert_eq!(tree.path(region), "/reserved-memory/ring@70000000");
        assert_eq!(tree.reg(region), Some(vec![(0x7000_0000, 0x101_0000)]));
        assert!(tree.in_memory(0x7000_0000, 0x101_0000));
        assert!(!tree.in_memory(0x7fff_f000, 0x2000));

        assert!(Fdt::parse(b"").is_err());
        assert!(Fdt::parse(&[0u8; 64]).is_err());
        assert!(Fdt::parse(&blob[..blob.len() - 8]).is_err(), "truncated");
        let mut bad = blob.clone();
        bad[0] ^= 1;
        assert!(Fdt::parse(&bad).is_err(), "bad magic");
    }
}
