//! Pure parsers for the command line's human forms: counts (`1M`, `500k`, `2.5M`), op mixes
//! (`90r10w`, `80r10w5c5d`) and server lists. No IO here, so every rule is unit tested.

use std::fmt;
use std::time::Duration;

/// An operation loadgen issues. The letter is the one used in a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// `r`: getData of a preloaded key.
    Read,
    /// `w`: setData (version -1) of a preloaded key.
    Write,
    /// `c`: create of a fresh, session-unique znode.
    Create,
    /// `d`: delete of the oldest znode this session created with `c`.
    Delete,
    /// `x`: getData with watch=true of a preloaded key. The server sets a data watch; the
    /// notification a later setData fires is consumed and counted.
    Watch,
    /// `m`: multi of check(version -1) of a preloaded key and setData of another: one
    /// top-level subtree, so one shard on warren.
    Multi,
    /// `a`: multi of check(version -1) of `/loadgen-epoch…` and setData of a preloaded key:
    /// Kafka's controller write, across two top-level subtrees (two shards of one core on
    /// warren with its default 8 shards, whatever its cores).
    MultiAcross,
    /// `g`: as `a`, but the checked node `/loadgen-gepoch…` lives on the other core of a warren
    /// running 2 cores: a multi across Raft groups (two-phase commit).
    MultiGroups,
}

impl OpKind {
    /// Every kind, in the order of `Mix::percent`, the table and the JSON.
    pub const ALL: [OpKind; 8] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Create,
        OpKind::Delete,
        OpKind::Watch,
        OpKind::Multi,
        OpKind::MultiAcross,
        OpKind::MultiGroups,
    ];
    /// How many kinds there are.
    pub const COUNT: usize = OpKind::ALL.len();

    pub fn letter(self) -> char {
        match self {
            OpKind::Read => 'r',
            OpKind::Write => 'w',
            OpKind::Create => 'c',
            OpKind::Delete => 'd',
            OpKind::Watch => 'x',
            OpKind::Multi => 'm',
            OpKind::MultiAcross => 'a',
            OpKind::MultiGroups => 'g',
        }
    }

    /// The ZooKeeper API name, used in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "getData",
            OpKind::Write => "setData",
            OpKind::Create => "create",
            OpKind::Delete => "delete",
            OpKind::Watch => "getWatch",
            OpKind::Multi => "multi",
            OpKind::MultiAcross => "multiAcross",
            OpKind::MultiGroups => "multiGroups",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn from_letter(c: char) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.letter() == c)
    }
}

/// Percentages per op kind, summing to exactly 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub percent: [u32; OpKind::COUNT],
}

impl Mix {
    /// The op for a uniform draw `roll` in 0..100: kinds take consecutive ranges in ALL order.
    pub fn pick(&self, roll: u32) -> OpKind {
        assert!(roll < 100, "roll {roll} out of 0..100");
        let mut upper = 0;
        for kind in OpKind::ALL {
            upper += self.percent[kind.index()];
            if roll < upper {
                return kind;
            }
        }
        unreachable!("mix percentages sum to 100")
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in OpKind::ALL {
            let p = self.percent[kind.index()];
            if p > 0 {
                write!(f, "{p}{}", kind.letter())?;
            }
        }
        Ok(())
    }
}

/// Parses a mix: one or more `<percent><letter>` terms, letters r, w, c, d, x, m, a, each at
/// most once, percentages summing to 100. Examples: `90r10w`, `100r`, `80r10w5c5d`, `80r10w10x`,
/// `100m`, `100a`.
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err("empty mix; expected e.g. 90r10w".into());
    }
    let mut percent = [0u32; OpKind::COUNT];
    let mut seen = [false; OpKind::COUNT];
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let kind = OpKind::from_letter(c).ok_or_else(|| {
            format!("mix {s:?}: unknown op '{c}' (r=getData, w=setData, c=create, d=delete, x=getData with watch, m=multi in one subtree, a=multi across two)")
        })?;
        if digits.is_empty() {
            return Err(format!("mix {s:?}: '{c}' needs a percentage before it, e.g. 10{c}"));
        }
        if seen[kind.index()] {
            return Err(format!("mix {s:?}: '{c}' appears twice"));
        }
        let p: u32 = digits.parse().map_err(|_| format!("mix {s:?}: percentage {digits} is too large"))?;
        seen[kind.index()] = true;
        percent[kind.index()] = p;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("mix {s:?}: {digits} has no op letter after it"));
    }
    let sum: u64 = percent.iter().map(|&p| u64::from(p)).sum();
    if sum != 100 {
        return Err(format!("mix {s:?}: percentages sum to {sum}, not 100"));
    }
    Ok(Mix { percent })
}

/// Parses a count: a decimal number with an optional suffix k (10^3), M (10^6) or G (10^9),
/// case-insensitive, `_` allowed as a separator. `2.5M` is allowed if the result is whole.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_lowercase() {
                'k' => 1_000,
                'm' => 1_000_000,
                'g' => 1_000_000_000,
                _ => return Err(format!("{s:?}: unknown suffix '{c}' (use k, M or G)")),
            };
            (&t[..i], mult)
        }
        _ => (&t[..], 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') || num.matches('.').count() > 1 {
        return Err(format!("{s:?} is not a count (examples: 2000, 500k, 1M, 2.5M)"));
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("{s:?} is not a count (examples: 2000, 500k, 1M, 2.5M)"));
    }
    let too_big = || format!("{s:?} is too large");
    let int: u64 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| too_big())? };
    let mut value = int.checked_mul(mult).ok_or_else(too_big)?;
    if !frac_part.is_empty() {
        // Exact decimal arithmetic: frac / 10^len * mult must be whole.
        let scale = 10u64.checked_pow(frac_part.len() as u32).ok_or_else(too_big)?;
        let frac: u64 = frac_part.parse().map_err(|_| too_big())?;
        let scaled = u128::from(frac) * u128::from(mult);
        if scaled % u128::from(scale) != 0 {
            return Err(format!("{s:?} is not a whole number"));
        }
        let add = u64::try_from(scaled / u128::from(scale)).map_err(|_| too_big())?;
        value = value.checked_add(add).ok_or_else(too_big)?;
    }
    Ok(value)
}

/// Parses a duration: a whole number with unit ms, s, m or h (`500ms`, `30s`, `2m`); a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (examples: 30s, 2m, 500ms)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    Ok(d)
}

/// Parses `host:port,host:port`; each entry must have a port. Names are resolved later.
pub fn parse_servers(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("--servers {s:?}: empty entry"));
        }
        let (host, port) =
            part.rsplit_once(':').ok_or_else(|| format!("--servers: {part:?} has no port (expected host:port)"))?;
        if host.is_empty() {
            return Err(format!("--servers: {part:?} has no host"));
        }
        port.parse::<u16>().map_err(|_| format!("--servers: {part:?} has a bad port {port:?}"))?;
        out.push(part.to_string());
    }
    Ok(out)
}

/// `--server-pid PID[,PID...]`: positive process ids (whether they are live is checked before
/// the run, see procinfo::check_live).
pub fn parse_pids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(str::trim)
        .map(|part| match part.parse::<u32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(format!("--server-pid: {part:?} is not a process id (expected PID[,PID...])")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids() {
        assert_eq!(parse_pids("42"), Ok(vec![42]));
        assert_eq!(parse_pids("1, 2,3"), Ok(vec![1, 2, 3]));
        for bad in ["", "0", "-1", "1,,2", "x", "1.5"] {
            assert!(parse_pids(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("1000000"), Ok(1_000_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("1m"), Ok(1_000_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("500K"), Ok(500_000));
        assert_eq!(parse_count("2.5M"), Ok(2_500_000));
        assert_eq!(parse_count("0.5k"), Ok(500));
        assert_eq!(parse_count(".5k"), Ok(500));
        assert_eq!(parse_count("1_000"), Ok(1000));
        assert_eq!(parse_count("2G"), Ok(2_000_000_000));
        assert_eq!(parse_count(" 7 "), Ok(7));
        assert_eq!(parse_count("0"), Ok(0));
    }

    #[test]
    fn bad_counts() {
        for bad in ["", "M", "1.5", "1.0001k", "abc", "1x", "-5", "1..5k", ".", "1e6", "99999999999999999999"] {
            assert!(parse_count(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_count("20000000000G").unwrap_err().contains("too large"));
        assert!(parse_count("1q").unwrap_err().contains("suffix"));
    }

    #[test]
    fn mixes() {
        assert_eq!(parse_mix("90r10w"), Ok(Mix { percent: [90, 10, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("100r"), Ok(Mix { percent: [100, 0, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("100w"), Ok(Mix { percent: [0, 100, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("50r50w"), Ok(Mix { percent: [50, 50, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("80r10w5c5d"), Ok(Mix { percent: [80, 10, 5, 5, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("10W90R"), Ok(Mix { percent: [90, 10, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("0r100w"), Ok(Mix { percent: [0, 100, 0, 0, 0, 0, 0, 0] }));
        assert_eq!(parse_mix("80r10w10x"), Ok(Mix { percent: [80, 10, 0, 0, 10, 0, 0, 0] }));
        assert_eq!(parse_mix("50x50w"), Ok(Mix { percent: [0, 50, 0, 0, 50, 0, 0, 0] }));
        assert_eq!(parse_mix("100X"), Ok(Mix { percent: [0, 0, 0, 0, 100, 0, 0, 0] }));
        assert_eq!(parse_mix("60r10w10c10d10x"), Ok(Mix { percent: [60, 10, 10, 10, 10, 0, 0, 0] }));
        assert_eq!(parse_mix("50m50a"), Ok(Mix { percent: [0, 0, 0, 0, 0, 50, 50, 0] }));
    }

    #[test]
    fn bad_mixes() {
        let cases = [
            ("", "empty"),
            ("90r", "sum to 90"),
            ("90r20w", "sum to 110"),
            ("90q10w", "unknown op 'q'"),
            ("50x25w25x", "twice"),
            ("x100", "needs a percentage"),
            ("90r5x", "sum to 95"),
            ("r100", "needs a percentage"),
            ("50r50", "no op letter"),
            ("50r25w25r", "twice"),
            ("99999999999r", "too large"),
        ];
        for (bad, why) in cases {
            let err = parse_mix(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn mix_display_round_trips() {
        for s in ["90r10w", "100r", "80r10w5c5d", "50w50d", "80r10w10x", "100x"] {
            assert_eq!(parse_mix(s).unwrap().to_string(), s);
        }
        // Display lists kinds in ALL order, x last.
        assert_eq!(parse_mix("50x50w").unwrap().to_string(), "50w50x");
    }

    #[test]
    fn pick_covers_ranges() {
        let mix = parse_mix("80r10w5c5d").unwrap();
        let mut counts = [0; OpKind::COUNT];
        for roll in 0..100 {
            counts[mix.pick(roll).index()] += 1;
        }
        assert_eq!(counts, [80, 10, 5, 5, 0, 0, 0, 0]);
        assert_eq!(mix.pick(0), OpKind::Read);
        assert_eq!(mix.pick(99), OpKind::Delete);
        let mix = parse_mix("50x50w").unwrap();
        assert_eq!(mix.pick(49), OpKind::Write);
        assert_eq!(mix.pick(50), OpKind::Watch);
        assert_eq!(mix.pick(99), OpKind::Watch);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "s", "0s", "1.5s", "10x", "-1s", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn servers() {
        assert_eq!(parse_servers("127.0.0.1:2181"), Ok(vec!["127.0.0.1:2181".to_string()]));
        assert_eq!(parse_servers("a:1, b:2").unwrap(), vec!["a:1", "b:2"]);
        assert_eq!(parse_servers("[::1]:2181").unwrap(), vec!["[::1]:2181"]);
        for bad in ["", "a", "a:", ":1", "a:1,,b:2", "a:99999"] {
            assert!(parse_servers(bad).is_err(), "{bad:?}");
        }
    }
}
