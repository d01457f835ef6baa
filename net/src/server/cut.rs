//! Consistent cuts for reads gathered from every shard (children and Stat of "/",
//! getEphemerals). Each shard answers from its own state at its own moment, so a naive merge
//! can show a state no single moment had: a client creates /a (shard A) and then /b (shard B),
//! and a reader sees /b without /a. The rule (docs/architecture.md, "Reads of /"): the parts
//! are merged only when one zxid Z lies in every part's range, where a part's range runs from
//! the last entry that changed what it read (`changed`) to the zxid its core had applied
//! everything through when it answered (`valid_through`): that part then equals its shard's
//! state at Z, and the merged answer is the node's state at Z. Otherwise the lagging parts are
//! asked again, to be answered once their core is valid through the highest `changed`.
//! Pure, so it is tested alone.

use engine::types::Zxid;

/// What one shard's part of a gathered read says about its moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStamp {
    /// The last entry that changed what this part read.
    pub changed: Zxid,
    /// Every entry of this shard's core up to here was applied when the part was read, and no
    /// later entry of that core has a zxid at or below it.
    pub valid_through: Zxid,
}

/// The parts to ask again, and the zxid their cores must be valid through first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub valid_through_at_least: Zxid,
    pub parts: Vec<usize>,
}

/// The zxid of the cut when the parts agree on one (the highest `changed`), else what to ask.
pub fn check_cut(stamps: &[PartStamp]) -> Result<Zxid, Retry> {
    for stamp in stamps {
        assert!(stamp.changed <= stamp.valid_through, "a part changed after it was read: {stamp:?}");
    }
    let cut = stamps.iter().map(|s| s.changed).max().unwrap_or(0);
    let parts: Vec<usize> = (0..stamps.len()).filter(|&i| stamps[i].valid_through < cut).collect();
    if parts.is_empty() {
        Ok(cut)
    } else {
        Err(Retry { valid_through_at_least: cut, parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(changed: Zxid, valid_through: Zxid) -> PartStamp {
        PartStamp { changed, valid_through }
    }

    #[test]
    fn parts_that_overlap_merge_at_the_latest_change() {
        assert_eq!(check_cut(&[stamp(10, 50), stamp(40, 45), stamp(0, 100)]), Ok(40));
        assert_eq!(check_cut(&[stamp(7, 7)]), Ok(7));
        assert_eq!(check_cut(&[]), Ok(0));
    }

    /// The anomaly the rule prevents: /a created at 100 (shard 0), /b at 200 (shard 1), shard 0
    /// answered before it applied 100 (valid through 90), shard 1 after 200.
    #[test]
    fn a_part_older_than_another_part_change_is_asked_again() {
        let retry = check_cut(&[stamp(20, 90), stamp(200, 210)]).unwrap_err();
        assert_eq!(retry, Retry { valid_through_at_least: 200, parts: vec![0] });
        // Asked again once its core is valid through 200, it now shows /a (changed 100).
        assert_eq!(check_cut(&[stamp(100, 205), stamp(200, 210)]), Ok(200));
    }

    #[test]
    #[should_panic(expected = "changed after it was read")]
    fn a_stamp_whose_change_is_beyond_its_moment_is_a_bug() {
        let _ = check_cut(&[stamp(10, 5)]);
    }
}
