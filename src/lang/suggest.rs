//! Did-you-mean: the closest known name to a misspelt one.

/// The candidate closest to `name`, when it is close enough to be a plausible typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        let edits = strsim::damerau_levenshtein(name, c);
        let plausible = score >= 0.82 || edits <= (name.len().max(c.len()) / 3).max(1);
        if plausible && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean `x`? ` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
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
}
