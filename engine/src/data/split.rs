//! Stratified selection: the one rule by which `limit` keeps part of a dataset and the
//! `classifier` stage holds part of its data out, so that every class keeps its share
//! whatever order the data comes in (an `images` folder is stored class by class).
//!
//! The rule: item j (0-based, in data order) of a class of m items stands at j / m of the
//! way through its class. Items are taken in the order of that fraction, ties broken by
//! label, then by position: first the first item of every class, then each class's next
//! items in proportion to its size. Taking the first `count` of n items in that order
//! keeps of a class of m between `(count − classes) · m / n` and `count · m / n + 1`
//! (within one of its share when the classes are equal), at least one item of every class
//! once `count` reaches the number of classes, and every item a smaller `count` keeps.
//! The rule needs no random numbers: the same labels always split the same way.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Every index of `labels` once, in the order the stratified rule takes them.
pub fn stratified_order(labels: &[i64]) -> Vec<usize> {
    let mut classes: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        classes.entry(label).or_default().push(i);
    }
    // (position in class, class size, label, index): ordered by position / size exactly.
    let mut ranked: Vec<(u64, u64, i64, usize)> = Vec::with_capacity(labels.len());
    for (&label, items) in &classes {
        let size = items.len() as u64;
        ranked.extend(items.iter().enumerate().map(|(j, &i)| (j as u64, size, label, i)));
    }
    ranked.sort_by(|a, b| by_fraction(a.0, a.1, b.0, b.1).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    ranked.into_iter().map(|(_, _, _, i)| i).collect()
}

/// Compares j1 / m1 with j2 / m2 without rounding.
fn by_fraction(j1: u64, m1: u64, j2: u64, m2: u64) -> Ordering {
    (u128::from(j1) * u128::from(m2)).cmp(&(u128::from(j2) * u128::from(m1)))
}

/// Splits the indices of `labels` into the first `count` of the stratified order (all of
/// them when `count` is larger) and the rest, each in data order (ascending).
pub fn stratified_split(labels: &[i64], count: usize) -> (Vec<usize>, Vec<usize>) {
    let order = stratified_order(labels);
    let count = count.min(order.len());
    let mut kept = order[..count].to_vec();
    let mut rest = order[count..].to_vec();
    kept.sort_unstable();
    rest.sort_unstable();
    (kept, rest)
}
