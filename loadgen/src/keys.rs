//! Which key an op touches: uniform over the keyspace, or Zipfian (rank k drawn with weight
//! 1/(k+1)^s, key 0 the hottest), as YCSB's zipfian generator without its scrambling. The Zipf
//! sampler is an exact inverse-CDF table: 8 bytes per key, built once and shared by every
//! worker.

use crate::run::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipf,
}

pub enum KeyChooser {
    Uniform {
        keys: u64,
    },
    /// cdf[k] = P(rank <= k); the last entry is 1.
    Zipf {
        cdf: Vec<f64>,
    },
}

impl KeyChooser {
    /// `keys` must be at least 1; `exponent` is used for Zipf only.
    pub fn new(distribution: Distribution, keys: u64, exponent: f64) -> KeyChooser {
        assert!(keys >= 1, "a key chooser needs at least one key");
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { keys },
            Distribution::Zipf => {
                let mut cdf: Vec<f64> = Vec::with_capacity(keys as usize);
                let mut sum = 0.0;
                for k in 0..keys {
                    sum += 1.0 / ((k + 1) as f64).powf(exponent);
                    cdf.push(sum);
                }
                for c in &mut cdf {
                    *c /= sum;
                }
                *cdf.last_mut().expect("keys >= 1") = 1.0;
                KeyChooser::Zipf { cdf }
            }
        }
    }

    pub fn pick(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.below(*keys),
            KeyChooser::Zipf { cdf } => {
                // 53 random bits → u in [0, 1).
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|&c| c <= u).min(cdf.len() - 1) as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(chooser: &KeyChooser, keys: usize, draws: usize) -> Vec<u32> {
        let mut rng = Rng::new(11);
        let mut seen = vec![0u32; keys];
        for _ in 0..draws {
            seen[chooser.pick(&mut rng) as usize] += 1;
        }
        seen
    }

    #[test]
    fn zipf_is_skewed_toward_key_zero_and_in_range() {
        let seen = histogram(&KeyChooser::new(Distribution::Zipf, 100, 0.99), 100, 100_000);
        assert!(seen[0] > seen[1] && seen[1] > seen[10] && seen[10] > seen[99], "{seen:?}");
        // P(rank 0) = 1 / H(100, 0.99) ≈ 0.19.
        assert!((17_000..21_000).contains(&seen[0]), "{}", seen[0]);
        assert!(seen[99] > 0);
    }

    #[test]
    fn zipf_with_exponent_zero_is_uniform() {
        let seen = histogram(&KeyChooser::new(Distribution::Zipf, 10, 0.0), 10, 100_000);
        assert!(seen.iter().all(|&n| (9_000..11_000).contains(&n)), "{seen:?}");
    }

    #[test]
    fn one_key() {
        for d in [Distribution::Uniform, Distribution::Zipf] {
            assert_eq!(histogram(&KeyChooser::new(d, 1, 0.99), 1, 100), vec![100]);
        }
    }
}
