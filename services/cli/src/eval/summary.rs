//! The summary numbers of a COCO evaluation: the twelve standard AP/AR figures and the
//! AP of each category, -1 where there is nothing to measure.

use serde::{Deserialize, Serialize};

use super::accumulate::Accumulated;
use super::dataset::Dataset;
use super::params::{AREA_ALL, MAX_DETS};

/// The twelve standard numbers, named as COCO reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct Stats {
    pub AP: f64,
    pub AP50: f64,
    pub AP75: f64,
    pub APs: f64,
    pub APm: f64,
    pub APl: f64,
    pub AR1: f64,
    pub AR10: f64,
    pub AR100: f64,
    pub ARs: f64,
    pub ARm: f64,
    pub ARl: f64,
}

impl Stats {
    /// Names and values in COCO's order.
    pub fn named(&self) -> [(&'static str, f64); 12] {
        [
            ("AP", self.AP),
            ("AP50", self.AP50),
            ("AP75", self.AP75),
            ("APs", self.APs),
            ("APm", self.APm),
            ("APl", self.APl),
            ("AR1", self.AR1),
            ("AR10", self.AR10),
            ("AR100", self.AR100),
            ("ARs", self.ARs),
            ("ARm", self.ARm),
            ("ARl", self.ARl),
        ]
    }
}

/// AP@[.5:.95] (all areas, 100 detections per image) of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryAp {
    pub id: i64,
    pub name: String,
    pub ap: f64,
}

/// The result of evaluating one IoU type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub stats: Stats,
    /// In ascending category id order.
    pub per_category: Vec<CategoryAp>,
}

/// Which IoU thresholds a summary number averages over.
#[derive(Clone, Copy)]
enum At {
    All,
    Iou(f64),
}

impl Metrics {
    pub(super) fn summarize(
        acc: &Accumulated,
        thresholds: &[f64],
        dataset: &Dataset,
        category_ids: &[i64],
    ) -> Metrics {
        let dets = |n: usize| MAX_DETS.iter().position(|&m| m == n).unwrap_or(0);
        let last = MAX_DETS.len() - 1;
        let keep_t = |at: At, t: usize| match at {
            At::All => true,
            At::Iou(v) => thresholds[t] == v,
        };
        let ap = |at: At, area: usize, m: usize, only: Option<usize>| {
            let mut values = Vec::new();
            for (t, per_recall) in acc.precision.iter().enumerate() {
                if !keep_t(at, t) {
                    continue;
                }
                for per_category in per_recall {
                    for (k, per_area) in per_category.iter().enumerate() {
                        if only.is_none_or(|o| o == k) {
                            values.push(per_area[area][m]);
                        }
                    }
                }
            }
            mean_defined(&values)
        };
        let ar = |area: usize, m: usize| {
            let values: Vec<f64> = acc
                .recall
                .iter()
                .flat_map(|per_category| per_category.iter().map(|per_area| per_area[area][m]))
                .collect();
            mean_defined(&values)
        };
        let stats = Stats {
            AP: ap(At::All, AREA_ALL, last, None),
            AP50: ap(At::Iou(0.5), AREA_ALL, last, None),
            AP75: ap(At::Iou(0.75), AREA_ALL, last, None),
            APs: ap(At::All, 1, last, None),
            APm: ap(At::All, 2, last, None),
            APl: ap(At::All, 3, last, None),
            AR1: ar(AREA_ALL, dets(1)),
            AR10: ar(AREA_ALL, dets(10)),
            AR100: ar(AREA_ALL, dets(100)),
            ARs: ar(1, last),
            ARm: ar(2, last),
            ARl: ar(3, last),
        };
        let per_category = category_ids
            .iter()
            .enumerate()
            .map(|(k, &id)| CategoryAp {
                id,
                name: dataset
                    .categories
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                ap: ap(At::All, AREA_ALL, last, Some(k)),
            })
            .collect();
        Metrics {
            stats,
            per_category,
        }
    }
}

/// Mean of the values that are not -1 (undefined); -1 when there are none.
fn mean_defined(values: &[f64]) -> f64 {
    let defined: Vec<f64> = values.iter().copied().filter(|&v| v > -1.0).collect();
    if defined.is_empty() {
        -1.0
    } else {
        defined.iter().sum::<f64>() / defined.len() as f64
    }
}
