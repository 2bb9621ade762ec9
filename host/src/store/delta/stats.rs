//! Feature statistics accumulated a part of a table at a time, so a table
//! larger than memory still gets them: a read that has no merge of the
//! table in memory streams it one event month (one partition) at a time,
//! and only the running figures are kept between months.
//!
//! Counts, extremes, mean and standard deviation are exact whatever the
//! size (the mean and the sum of squared deviations merged chunk by chunk
//! as Chan et al.'s parallel variance does). Percentiles are exact, as
//! numpy's default linear interpolation, while a feature has at most
//! [`EXACT_VALUES`] values; above that the values go into a t-digest
//! (DataFusion's, as its `approx_percentile_cont` uses) and the
//! percentiles are its estimates, typically within a fraction of a
//! percentile rank.

use super::merge::Merged;
use crate::model::FeatureStatistics;
use crate::store::sql::{interpolate, percentile_ranks};
use arrow_array::{Array, Float64Array, Int64Array};
use datafusion_functions_aggregate_common::tdigest::TDigest;

/// Values of one feature kept for exact percentiles: 2 MiB of f64 each.
pub(super) const EXACT_VALUES: usize = 1 << 18;
/// Centroids of a t-digest (DataFusion's default).
const DIGEST_SIZE: usize = 100;
const QUANTILES: [f64; 2] = [0.5, 0.95];

/// The running statistics of the asked features.
pub(super) struct Statistics {
    features: Vec<(String, bool, Feature)>,
    rows: u64,
}

#[derive(Default)]
struct Feature {
    count: u64,
    numbers: u64,
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
    min: f64,
    max: f64,
    quantiles: Quantiles,
}

enum Quantiles {
    Exact(Vec<f64>),
    Digest(TDigest),
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles::Exact(Vec::new())
    }
}

impl Statistics {
    /// Statistics of `features` (name, numeric) over no rows yet.
    pub(super) fn new(features: &[(String, bool)]) -> Self {
        Statistics {
            features: features.iter().map(|(n, num)| (n.clone(), *num, Feature::default())).collect(),
            rows: 0,
        }
    }

    /// Adds every row of `merged` (deduplicated rows of one part).
    pub(super) fn add(&mut self, merged: &Merged) {
        self.rows += merged.len() as u64;
        for (name, numeric, feature) in &mut self.features {
            let Some((_, column)) = merged.value_columns().iter().find(|(n, _)| n == name) else {
                continue;
            };
            feature.count += (column.len() - column.null_count()) as u64;
            if !*numeric {
                continue;
            }
            let values: Vec<f64> = if let Some(f) = column.as_any().downcast_ref::<Float64Array>() {
                f.iter().flatten().collect()
            } else if let Some(i) = column.as_any().downcast_ref::<Int64Array>() {
                i.iter().flatten().map(|v| v as f64).collect()
            } else {
                continue;
            };
            feature.add(values);
        }
    }

    pub(super) fn finish(self) -> Vec<FeatureStatistics> {
        let rows = self.rows;
        self.features
            .into_iter()
            .map(|(_, numeric, f)| {
                let mut s = FeatureStatistics { count: f.count, nulls: rows - f.count, ..FeatureStatistics::default() };
                if numeric && f.numbers > 0 {
                    f.fill(&mut s);
                }
                s
            })
            .collect()
    }
}

impl Feature {
    fn add(&mut self, values: Vec<f64>) {
        if values.is_empty() {
            return;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if self.numbers == 0 {
            (self.mean, self.m2, self.min, self.max) = (mean, m2, lo, hi);
        } else {
            let total = self.numbers as f64 + n;
            let delta = mean - self.mean;
            self.m2 += m2 + delta * delta * self.numbers as f64 * n / total;
            self.mean += delta * n / total;
            (self.min, self.max) = (self.min.min(lo), self.max.max(hi));
        }
        self.numbers += values.len() as u64;
        self.quantiles = match std::mem::take(&mut self.quantiles) {
            Quantiles::Exact(mut kept) if kept.len() + values.len() <= EXACT_VALUES => {
                kept.extend(values);
                Quantiles::Exact(kept)
            }
            Quantiles::Exact(mut kept) => {
                kept.extend(values);
                Quantiles::Digest(TDigest::new(DIGEST_SIZE).merge_unsorted_f64(kept))
            }
            Quantiles::Digest(digest) => Quantiles::Digest(digest.merge_unsorted_f64(values)),
        };
    }

    fn fill(self, s: &mut FeatureStatistics) {
        match self.quantiles {
            Quantiles::Exact(mut values) => {
                // Every value at hand: computed from them directly, in one
                // pass each, as numpy and pandas do.
                let n = values.len();
                let mean = values.iter().sum::<f64>() / n as f64;
                s.mean = Some(mean);
                if n > 1 {
                    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
                    s.std = Some((squares / (n - 1) as f64).sqrt());
                }
                values.sort_unstable_by(f64::total_cmp);
                s.min = values.first().copied();
                s.max = values.last().copied();
                let ranks = percentile_ranks(n as u64, &QUANTILES);
                let p = |k: usize| {
                    let (rank, frac) = ranks[k];
                    interpolate(values.get(rank).copied(), values.get(rank + 1).copied(), frac)
                };
                s.p50 = p(0);
                s.p95 = p(1);
            }
            Quantiles::Digest(digest) => {
                s.mean = Some(self.mean);
                s.std = (self.numbers > 1).then(|| (self.m2 / (self.numbers - 1) as f64).sqrt());
                s.min = Some(self.min);
                s.max = Some(self.max);
                s.p50 = Some(digest.estimate_quantile(QUANTILES[0]));
                s.p95 = Some(digest.estimate_quantile(QUANTILES[1]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature_over(chunks: &[Vec<f64>]) -> FeatureStatistics {
        let mut f = Feature::default();
        for c in chunks {
            f.add(c.clone());
        }
        let mut s = FeatureStatistics::default();
        f.fill(&mut s);
        s
    }

    #[test]
    fn small_features_get_exact_figures_however_they_are_chunked() {
        // 1..=10: mean 5.5, sample std sqrt(82.5 / 9), p50 5.5, p95 at rank
        // 8.55: 9 + 0.55 * (10 - 9) = 9.55.
        let s = feature_over(&[vec![3.0, 1.0, 2.0], vec![], vec![10.0, 4.0, 5.0, 6.0], vec![7.0, 9.0, 8.0]]);
        assert_eq!(s.mean, Some(5.5));
        assert_eq!(s.std, Some((82.5f64 / 9.0).sqrt()));
        assert_eq!((s.min, s.max), (Some(1.0), Some(10.0)));
        assert_eq!(s.p50, Some(5.5));
        assert!((s.p95.unwrap() - 9.55).abs() < 1e-12, "{:?}", s.p95);
    }

    #[test]
    fn large_features_stream_exact_moments_and_estimated_percentiles() {
        // 0, 1, ..., n - 1 in 16 chunks: mean (n - 1) / 2, sample variance
        // n (n + 1) / 12, p50 (n - 1) / 2 and p95 0.95 (n - 1).
        let n = EXACT_VALUES * 4;
        let chunks: Vec<Vec<f64>> =
            (0..16).map(|c| (c * n / 16..(c + 1) * n / 16).map(|v| v as f64).collect()).collect();
        let s = feature_over(&chunks);
        let nf = n as f64;
        assert!((s.mean.unwrap() - (nf - 1.0) / 2.0).abs() < 1e-6);
        let std = (nf * (nf + 1.0) / 12.0).sqrt();
        assert!((s.std.unwrap() - std).abs() / std < 1e-9, "{:?} against {std}", s.std);
        assert_eq!((s.min, s.max), (Some(0.0), Some(nf - 1.0)));
        // The t-digest's estimate: within 0.5 % of the range.
        for (got, want) in [(s.p50, 0.5 * (nf - 1.0)), (s.p95, 0.95 * (nf - 1.0))] {
            assert!((got.unwrap() - want).abs() < 0.005 * nf, "{got:?} against {want}");
        }
    }
}
