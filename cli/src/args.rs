//! Parsing and printing the units the command line speaks: sizes (`4K`,
//! binary), counts and rates (`100k`, decimal), durations (`500ms`).

use std::time::Duration;

/// A byte size: `4096`, `4K`, `4KiB`, `1M`, `1MiB` (multiples of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 64, 4K or 1MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => return Err(format!("{s:?}: unknown size unit {unit:?} (use K, M or G)")),
    };
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size or a range of sizes: `64`, `8..4K`.
pub(crate) fn parse_size_range(s: &str) -> Result<(u32, u32), String> {
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse_size(a)?, parse_size(b)?);
            if a > b {
                return Err(format!("{s:?}: the range is empty ({a} > {b})"));
            }
            Ok((a, b))
        }
        None => {
            let n = parse_size(s)?;
            Ok((n, n))
        }
    }
}

/// A count or a rate: `1000`, `100k`, `2.5M`, `1G` (multiples of 1000).
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a number (like 1000, 100k or 2.5M)"))?;
    if !(0.0..=u64::MAX as f64).contains(&(n * mul)) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok((n * mul).round() as u64)
}

/// A duration: `2` or `2s`, `500ms`, `100us`, `1.5m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 2s, 500ms or 1m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// `n` with an SI prefix and three significant digits: `12.3 M`.
pub(crate) fn si(n: f64) -> String {
    let (value, prefix) = if n >= 1e9 {
        (n / 1e9, " G")
    } else if n >= 1e6 {
        (n / 1e6, " M")
    } else if n >= 1e3 {
        (n / 1e3, " k")
    } else {
        (n, " ")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$}{prefix}").trim_end().to_owned()
}

/// A byte size in the largest binary unit that divides it: `4 KiB`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        0 => "0 B".to_owned(),
        n if n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// Nanoseconds in a readable unit: `850 ns`, `12.5 µs`, `3.1 ms`, `2.0 s`.
pub(crate) fn nanos(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.1} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("8G").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_size_range("8..4K"), Ok((8, 4096)));
        assert_eq!(parse_size_range("64"), Ok((64, 64)));
        assert!(parse_size_range("4K..8").is_err());
    }

    #[test]
    fn counts_and_durations() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert_eq!(parse_count("2.5M"), Ok(2_500_000));
        assert!(parse_count("-1").is_err());
        assert!(parse_count("x").is_err());
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("2 fortnights").is_err());
    }

    #[test]
    fn printing() {
        assert_eq!(si(12_345_678.0), "12.3 M");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1.5e9), "1.50 G");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(24), "24 B");
        assert_eq!(nanos(850.0), "850 ns");
        assert_eq!(nanos(12_500.0), "12.5 µs");
    }
}
