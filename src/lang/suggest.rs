//! Did-you-mean: the closest known name to a misspelt one.
//!
//! [`closest`] compares a name with every candidate, which is right for the schema's
//! short lists. A pipeline's own names can number in the thousands and every misspelt
//! reference asks for a suggestion, so [`Names`] bounds the cost of one question: the
//! names one edit away are found through an index of their one-letter deletions, and
//! only when there are none are at most [`SCAN_LIMIT`] names of the nearest lengths
//! compared one by one.

use std::collections::HashMap;

/// At most this many candidates are compared with a name, one by one, per question.
pub const SCAN_LIMIT: usize = 256;

/// How alike two names are (Jaro–Winkler of their lower-case forms), when close enough
/// to be a plausible typo.
fn plausible(name: &str, lower: &str, candidate: &str) -> Option<f64> {
    let score = strsim::jaro_winkler(lower, &candidate.to_lowercase());
    let edits = strsim::damerau_levenshtein(name, candidate);
    (score >= 0.82 || edits <= (name.len().max(candidate.len()) / 3).max(1)).then_some(score)
}

/// The best-scoring plausible candidate (the first of equals), never `name` itself.
fn best_of<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        if let Some(score) = plausible(name, &lower, c) {
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, c));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// The candidate closest to `name`, when it is close enough to be a plausible typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    best_of(name, candidates)
}

/// A set of names to suggest from, indexed once so that each question costs at most
/// [`SCAN_LIMIT`] comparisons plus the names one edit away.
pub struct Names<'a> {
    /// In the order given (suggestions prefer the earlier of equally close names).
    names: Vec<&'a str>,
    /// Positions in `names`, sorted by length.
    by_len: Vec<u32>,
    /// Each name and each of its one-letter deletions → the positions of the names.
    deletions: HashMap<String, Vec<u32>>,
}

impl<'a> Names<'a> {
    pub fn new(names: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<&'a str> = names.into_iter().collect();
        let mut by_len: Vec<u32> = (0..names.len() as u32).collect();
        by_len.sort_by_key(|&i| names[i as usize].len());
        let mut deletions: HashMap<String, Vec<u32>> = HashMap::new();
        if names.len() > SCAN_LIMIT {
            for (i, n) in names.iter().enumerate() {
                for key in one_deletion_keys(n) {
                    let at = deletions.entry(key).or_default();
                    if at.last() != Some(&(i as u32)) {
                        at.push(i as u32);
                    }
                }
            }
        }
        Names { names, by_len, deletions }
    }

    /// The name closest to `name` (never `name` itself, nor `except`).
    pub fn closest(&self, name: &str, except: Option<&str>) -> Option<&'a str> {
        let allowed = |c: &&'a str| Some(*c) != except;
        if self.names.len() <= SCAN_LIMIT {
            return best_of(name, self.names.iter().copied().filter(allowed));
        }
        let mut near: Vec<u32> =
            one_deletion_keys(name).filter_map(|k| self.deletions.get(&k)).flatten().copied().collect();
        near.sort_unstable();
        near.dedup();
        let one_edit = near.iter().map(|&i| self.names[i as usize]).filter(allowed);
        if let Some(best) = best_of(name, one_edit) {
            return Some(best);
        }
        let mut scanned: Vec<u32> = self.nearest_lengths(name.len()).collect();
        scanned.sort_unstable();
        best_of(name, scanned.into_iter().map(|i| self.names[i as usize]).filter(allowed))
    }

    /// At most [`SCAN_LIMIT`] positions, of the names whose lengths are nearest `len`.
    fn nearest_lengths(&self, len: usize) -> impl Iterator<Item = u32> + '_ {
        let split = self.by_len.partition_point(|&i| self.names[i as usize].len() < len);
        let (mut lo, mut hi) = (split, split);
        let mut out = Vec::with_capacity(SCAN_LIMIT.min(self.by_len.len()));
        while out.len() < SCAN_LIMIT && (lo > 0 || hi < self.by_len.len()) {
            let below = lo.checked_sub(1).map(|j| len - self.names[self.by_len[j] as usize].len().min(len));
            let above = self.by_len.get(hi).map(|&i| self.names[i as usize].len().saturating_sub(len));
            match (below, above) {
                (Some(b), Some(a)) if b < a => {
                    lo -= 1;
                    out.push(self.by_len[lo]);
                }
                (_, Some(_)) => {
                    out.push(self.by_len[hi]);
                    hi += 1;
                }
                (Some(_), None) => {
                    lo -= 1;
                    out.push(self.by_len[lo]);
                }
                (None, None) => break,
            }
        }
        out.into_iter()
    }
}

/// A name and each of its one-letter deletions: two names share one of these keys when
/// one letter inserted, removed, replaced or two swapped turn one into the other.
fn one_deletion_keys(name: &str) -> impl Iterator<Item = String> + '_ {
    let cuts = name.char_indices().map(move |(i, c)| format!("{}{}", &name[..i], &name[i + c.len_utf8()..]));
    std::iter::once(name.to_string()).chain(cuts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_ignores_unrelated_names() {
        assert_eq!(closest("stpes", ["steps", "eta", "spacing"]), Some("steps"));
        assert_eq!(closest("cosin", ["linear", "cosine", "sigmoid"]), Some("cosine"));
        assert_eq!(closest("zzz", ["linear", "cosine", "sigmoid"]), None);
    }

    #[test]
    fn a_large_set_finds_one_edit_typos_anywhere_in_it() {
        let owned: Vec<String> = (0..20_000).map(|i| format!("stage_{i:05}")).collect();
        let names = Names::new(owned.iter().map(String::as_str));
        // Deep in the set, far beyond what one question scans one by one.
        assert_eq!(names.closest("stage17345", None), Some("stage_17345"));
        assert_eq!(names.closest("stgae_17345", None), Some("stage_17345"));
        assert_eq!(names.closest("stage_17345x", None), Some("stage_17345"));
        assert_ne!(names.closest("stage_17345x", Some("stage_17345")), Some("stage_17345"));
    }

    #[test]
    fn a_large_set_compares_at_most_the_scan_limit_one_by_one() {
        let owned: Vec<String> = (0..5_000).map(|i| format!("n{i}")).collect();
        let names = Names::new(owned.iter().map(String::as_str));
        assert_eq!(names.nearest_lengths(3).count(), SCAN_LIMIT);
        assert!(names.nearest_lengths(3).all(|i| (2..=4).contains(&owned[i as usize].len())));
        assert_eq!(names.closest("zzzzzzzzzzzz", None), None);
    }

    #[test]
    fn a_small_set_behaves_like_closest() {
        let list = ["linear", "cosine", "sigmoid", "cosine_1000"];
        let names = Names::new(list);
        for typo in ["cosin", "linaer", "sigmod", "cos", "zzz"] {
            assert_eq!(names.closest(typo, None), closest(typo, list), "{typo}");
        }
        assert_eq!(names.closest("cosin", Some("cosine")), Some("cosine_1000"));
    }
}
