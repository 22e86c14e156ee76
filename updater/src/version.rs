//! Bundle version ordering for downgrade protection: dotted components compared numerically
//! in natural order (digit runs as numbers, so `rc2 < rc10`); a `-suffix` (pre-release) sorts before the release,
//! as in semver (`1.2.0-rc1 < 1.2.0 < 1.10.0`).

use std::cmp::Ordering;

fn components(version: &str) -> (Vec<&str>, Option<&str>) {
    let (release, pre) = match version.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (version, None),
    };
    (release.split('.').collect(), pre)
}

/// Splits `rc10` into `["rc", "10"]`: runs of digits and of non-digits.
fn runs(component: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = component.as_bytes();
    for i in 1..=bytes.len() {
        if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[i - 1].is_ascii_digit() {
            out.push(&component[start..i]);
            start = i;
        }
    }
    out
}

/// Natural order of one component: digit runs numerically, other runs as text.
fn compare_component(x: &str, y: &str) -> Ordering {
    let (rx, ry) = (runs(x), runs(y));
    for (a, b) in rx.iter().zip(ry.iter()) {
        let order = match (a.parse::<u128>(), b.parse::<u128>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => a.cmp(b),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    rx.len().cmp(&ry.len())
}

fn compare_parts(a: &[&str], b: &[&str]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or("0");
        let y = b.get(i).copied().unwrap_or("0");
        let order = compare_component(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// Orders two version strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ra, pa) = components(a.trim());
    let (rb, pb) = components(b.trim());
    match compare_parts(&ra, &rb) {
        Ordering::Equal => match (pa, pb) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => compare_parts(
                &x.split('.').collect::<Vec<_>>(),
                &y.split('.').collect::<Vec<_>>(),
            ),
        },
        order => order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_semver() {
        assert_eq!(compare("1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(compare("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(compare("1.2.0-rc1", "1.2.0"), Ordering::Less);
        assert_eq!(compare("2026.01", "2025.12"), Ordering::Greater);
        assert_eq!(compare("1.0.0-rc2", "1.0.0-rc10"), Ordering::Less);
    }
}
