//! Host names written compactly, in Slurm's hostlist notation (`n[1-4,7],login2`), so that a
//! report on the logs of 128 nodes names them in a few characters and in numeric order.

use std::collections::BTreeMap;

/// `names` (any order, repeats allowed) in hostlist notation: names that end in a number are
/// grouped by what precedes it, and consecutive numbers make ranges; zero-padded numbers keep
/// their width (`node[01-12]`).
pub fn compress<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    // (prefix, width of zero-padded numbers or 0) -> numbers; names without a number apart.
    let mut groups: BTreeMap<(&str, usize), Vec<u64>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    let mut parsed: Vec<(&str, &str)> = Vec::new();
    for name in names {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 18 {
            plain.push(name);
        } else {
            parsed.push(name.split_at(name.len() - digits));
        }
    }
    // A prefix's padded width, if any of its numbers is zero-padded: numbers of that many
    // digits join the padded group (`node01`..`node10`).
    let mut padded: BTreeMap<&str, usize> = BTreeMap::new();
    for (prefix, digits) in &parsed {
        if digits.len() > 1 && digits.starts_with('0') {
            padded.insert(prefix, digits.len());
        }
    }
    for (prefix, digits) in parsed {
        let width = match padded.get(prefix) {
            Some(&w) if w == digits.len() => w,
            _ => 0,
        };
        let n = digits.parse().expect("at most 18 digits");
        groups.entry((prefix, width)).or_default().push(n);
    }
    let mut parts: Vec<(String, String)> = groups
        .into_iter()
        .map(|((prefix, width), mut ns)| {
            ns.sort_unstable();
            ns.dedup();
            let num = |n: u64| format!("{n:0width$}");
            let text = if ns.len() == 1 {
                format!("{prefix}{}", num(ns[0]))
            } else {
                let mut ranges: Vec<String> = Vec::new();
                let mut i = 0;
                while i < ns.len() {
                    let mut j = i;
                    while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
                        j += 1;
                    }
                    ranges.push(if i == j {
                        num(ns[i])
                    } else {
                        format!("{}-{}", num(ns[i]), num(ns[j]))
                    });
                    i = j + 1;
                }
                format!("{prefix}[{}]", ranges.join(","))
            };
            (prefix.to_string(), text)
        })
        .collect();
    plain.sort_unstable();
    plain.dedup();
    parts.extend(plain.into_iter().map(|p| (p.to_string(), p.to_string())));
    parts.sort();
    let texts: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
    texts.join(",")
}

#[cfg(test)]
mod tests {
    use super::compress;

    #[test]
    fn ranges_in_numeric_order() {
        let names: Vec<String> = (1..=128).rev().map(|i| format!("n{i}")).collect();
        assert_eq!(compress(names.iter().map(String::as_str)), "n[1-128]");
        assert_eq!(
            compress(["n3", "n1", "n2", "n7", "n9", "n10"]),
            "n[1-3,7,9-10]"
        );
        assert_eq!(compress(["n4"]), "n4");
        assert_eq!(compress(["n4", "n4"]), "n4");
    }

    #[test]
    fn padding_prefixes_and_plain_names() {
        assert_eq!(
            compress(["node01", "node02", "node10", "node03"]),
            "node[01-03,10]"
        );
        assert_eq!(
            compress(["gpu-a1", "login", "gpu-b2", "gpu-a2", "cpu"]),
            "cpu,gpu-a[1-2],gpu-b2,login"
        );
        // A name of one digit beside padded ones keeps its own form.
        assert_eq!(compress(["node01", "node1"]), "node01,node1");
        assert_eq!(compress([] as [&str; 0]), "");
        // Too long to be a number: as it is.
        assert_eq!(
            compress(["h1234567890123456789012"]),
            "h1234567890123456789012"
        );
    }
}
