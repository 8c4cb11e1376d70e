//! Which served version answers a request: a number, a label (`stable`, `canary`), or —
//! when the request names none — a weighted draw over the `traffic` split, else the
//! highest served version. Pure: the caller passes the served versions and a random draw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::ModelConfig;

/// A model's labels and traffic split, restricted to versions that are served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    pub labels: BTreeMap<String, u64>,
    /// (version, weight), weights > 0, versions ascending.
    pub traffic: Vec<(u64, u32)>,
}

/// Why a request's version could not be resolved.
#[derive(Debug, PartialEq)]
pub enum Unresolved {
    /// The version or label names nothing served.
    Unknown,
    /// Nothing is served at all.
    NoneServed,
}

impl Routing {
    /// Keeps the labels and weights of `config` that point at versions in `served`;
    /// returns the rest as warnings (a label points only at a served version).
    pub fn new(config: &ModelConfig, served: &[u64]) -> (Routing, Vec<String>) {
        let mut warnings = Vec::new();
        let mut labels = BTreeMap::new();
        for (label, &v) in &config.labels {
            if served.contains(&v) {
                labels.insert(label.clone(), v);
            } else {
                warnings.push(format!(
                    "label '{label}' points at version {v}, which is not served; ignored"
                ));
            }
        }
        let mut traffic = Vec::new();
        for (v, &w) in &config.traffic {
            match v.parse::<u64>() {
                Ok(n) if served.contains(&n) => {
                    if w > 0 {
                        traffic.push((n, w));
                    }
                }
                _ => warnings.push(format!(
                    "traffic weight for version {v}, which is not served; ignored"
                )),
            }
        }
        traffic.sort_unstable();
        (Routing { labels, traffic }, warnings)
    }

    /// The version that answers `requested` (a number, a label, or none/empty) among
    /// `served` (ascending). `draw` is a uniform random number for the traffic split.
    pub fn resolve(
        &self,
        requested: Option<&str>,
        served: &[u64],
        draw: u64,
    ) -> Result<u64, Unresolved> {
        let highest = *served.last().ok_or(Unresolved::NoneServed)?;
        match requested.filter(|v| !v.is_empty()) {
            Some(v) => {
                let n = match v.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => *self.labels.get(v).ok_or(Unresolved::Unknown)?,
                };
                served.contains(&n).then_some(n).ok_or(Unresolved::Unknown)
            }
            None if self.traffic.is_empty() => Ok(highest),
            None => {
                let total: u64 = self.traffic.iter().map(|&(_, w)| u64::from(w)).sum();
                let mut point = draw % total;
                for &(v, w) in &self.traffic {
                    if point < u64::from(w) {
                        return Ok(v);
                    }
                    point -= u64::from(w);
                }
                Ok(highest)
            }
        }
    }
}

/// A cheap uniform draw for the traffic split: splitmix64 over a process-wide counter.
pub fn draw() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ModelConfig {
        ModelConfig::parse(text).unwrap()
    }

    #[test]
    fn numbers_labels_and_default_resolve() {
        let (r, warnings) = Routing::new(
            &config("labels = { stable = 3, canary = 4, old = 1 }"),
            &[3, 4],
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(r.resolve(Some("canary"), &[3, 4], 0), Ok(4));
        assert_eq!(r.resolve(Some("3"), &[3, 4], 0), Ok(3));
        assert_eq!(r.resolve(None, &[3, 4], 0), Ok(4));
        assert_eq!(r.resolve(Some(""), &[3, 4], 0), Ok(4));
        assert_eq!(r.resolve(Some("old"), &[3, 4], 0), Err(Unresolved::Unknown));
        assert_eq!(r.resolve(Some("5"), &[3, 4], 0), Err(Unresolved::Unknown));
        assert_eq!(r.resolve(None, &[], 0), Err(Unresolved::NoneServed));
    }

    #[test]
    fn traffic_split_follows_the_weights() {
        let (r, _) = Routing::new(&config("traffic = { \"3\" = 90, \"4\" = 10 }"), &[3, 4]);
        let n = 100_000;
        let fours = (0..n)
            .filter(|_| r.resolve(None, &[3, 4], draw()) == Ok(4))
            .count();
        let share = fours as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.01, "share of version 4: {share}");
        // A named version bypasses the split.
        assert_eq!(r.resolve(Some("3"), &[3, 4], 99), Ok(3));
    }
}
