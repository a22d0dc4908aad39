//! Ranks written as compressed sets, `0-16,18-63`: a report grows with the number of distinct
//! states, not with the number of ranks.

use std::fmt::Write as _;

/// `ranks` (any order, repeats allowed) as `a-b,c,d-e`.
pub fn compress(ranks: impl IntoIterator<Item = u32>) -> String {
    let mut v: Vec<u32> = ranks.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// The ranks of `0..size` not in `have`.
pub fn missing(size: u32, have: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let have: std::collections::HashSet<u32> = have.into_iter().collect();
    (0..size).filter(|r| !have.contains(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_singles() {
        assert_eq!(compress([]), "");
        assert_eq!(compress([5]), "5");
        assert_eq!(compress((0..17).chain(18..64)), "0-16,18-63");
        assert_eq!(compress([3, 1, 2, 2, 7, 9, 8]), "1-3,7-9");
        assert_eq!(compress([0, 2, 4]), "0,2,4");
        assert_eq!(missing(5, [0, 2, 4]), vec![1, 3]);
    }
}
