//! Ansible's host ranges: `web[01:20].example.com`, `db-[a:c]`, `node[0:10:2]`.
//!
//! A numeric range keeps the width of its start (`[01:20]` gives `01` … `20`); a letter range
//! runs over single letters. Several ranges in one pattern multiply. A pattern that would expand
//! past [`MAX_HOSTS`] names is refused, so a typo cannot make millions of targets.

/// The most names one pattern may expand into.
pub(crate) const MAX_HOSTS: usize = 100_000;

/// The names `pattern` stands for, in order (just `pattern` when it has no range).
pub(crate) fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let Some(length) = pattern[open..].find(']') else {
        return Err(format!(
            "host range in {pattern:?} opens '[' without closing it"
        ));
    };
    let (prefix, range, suffix) = (
        &pattern[..open],
        &pattern[open + 1..open + length],
        &pattern[open + length + 1..],
    );
    let items = range_items(range).map_err(|why| format!("host range [{range}]: {why}"))?;
    let rests = expand(suffix)?;
    if items.len().saturating_mul(rests.len()) > MAX_HOSTS {
        return Err(format!(
            "{pattern:?} expands to more than {MAX_HOSTS} hosts"
        ));
    }
    let mut names = Vec::with_capacity(items.len() * rests.len());
    for item in &items {
        for rest in &rests {
            names.push(format!("{prefix}{item}{rest}"));
        }
    }
    Ok(names)
}

/// The items of `start:end[:step]`.
fn range_items(range: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = range.split(':').collect();
    let (start, end, step) = match parts[..] {
        [start, end] => (start, end, 1),
        [start, end, step] => (
            start,
            end,
            step.parse::<usize>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("step {step:?} is not a positive number"))?,
        ),
        _ => return Err("expected [start:end] or [start:end:step]".into()),
    };
    if let (Ok(first), Ok(last)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if first > last {
            return Err(format!("{start} is after {end}"));
        }
        if (last - first) / step as u64 >= MAX_HOSTS as u64 {
            return Err(format!("more than {MAX_HOSTS} hosts"));
        }
        let width = start.len();
        return Ok((first..=last)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect());
    }
    match (single_letter(start), single_letter(end)) {
        (Some(first), Some(last)) if first <= last => Ok((first..=last)
            .step_by(step)
            .map(|c| c.to_string())
            .collect()),
        (Some(_), Some(_)) => Err(format!("{start} is after {end}")),
        _ => Err(format!(
            "{start:?} to {end:?} is neither a range of numbers nor of single letters"
        )),
    }
}

fn single_letter(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_width_and_letters_their_case() {
        assert_eq!(
            expand("web[08:11].example.com").unwrap(),
            [
                "web08.example.com",
                "web09.example.com",
                "web10.example.com",
                "web11.example.com"
            ]
        );
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("n[0:6:3]").unwrap(), ["n0", "n3", "n6"]);
        assert_eq!(
            expand("r[1:2]c[1:2]").unwrap(),
            ["r1c1", "r1c2", "r2c1", "r2c2"]
        );
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "w[1:",
            "w[3:1]",
            "w[1:2:0]",
            "w[a:10]",
            "w[1]",
            "w[0:99999999]",
            "w[0:999]x[0:999]",
        ] {
            assert!(expand(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
