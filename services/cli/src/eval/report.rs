//! The metrics file of an evaluation run (`metrics.json`) and its terminal tables: the
//! numbers of one run, and the difference between two runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::summary::{Metrics, Stats};
use crate::table::Table;

/// AP@[.5:.95] of one category for boxes and masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CategoryScores {
    pub bbox: f64,
    pub segm: f64,
}

/// `metrics.json`: the standard numbers for boxes and masks, and AP per category name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    pub bbox: Stats,
    pub segm: Stats,
    pub per_category: BTreeMap<String, CategoryScores>,
}

impl MetricsFile {
    /// Combines the box and mask evaluations of the same files.
    pub fn new(bbox: &Metrics, segm: &Metrics) -> MetricsFile {
        let per_category = bbox
            .per_category
            .iter()
            .zip(&segm.per_category)
            .map(|(b, s)| {
                (
                    b.name.clone(),
                    CategoryScores {
                        bbox: b.ap,
                        segm: s.ap,
                    },
                )
            })
            .collect();
        MetricsFile {
            bbox: bbox.stats,
            segm: segm.stats,
            per_category,
        }
    }

    /// One row per number: metric, bbox, segm; then AP per category.
    pub fn table(&self) -> String {
        let mut table = Table::new(&[("metric", false), ("bbox", true), ("segm", true)]);
        for ((name, b), (_, s)) in self.bbox.named().into_iter().zip(self.segm.named()) {
            table.row(vec![name.to_string(), number(b), number(s)]);
        }
        for (name, scores) in &self.per_category {
            table.row(vec![
                format!("AP {name}"),
                number(scores.bbox),
                number(scores.segm),
            ]);
        }
        table.render()
    }

    /// This run against `other`: both values and the change (this − other) per number.
    pub fn comparison(&self, other: &MetricsFile) -> String {
        let mut table = Table::new(&[
            ("metric", false),
            ("bbox", true),
            ("other", true),
            ("change", true),
            ("segm", true),
            ("other", true),
            ("change", true),
        ]);
        let rows = self
            .bbox
            .named()
            .into_iter()
            .zip(self.segm.named())
            .zip(other.bbox.named().into_iter().zip(other.segm.named()))
            .map(|(((name, b), (_, s)), ((_, ob), (_, os)))| {
                (name.to_string(), Some((b, s)), Some((ob, os)))
            });
        let mut names: Vec<&String> = self.per_category.keys().collect();
        for name in other.per_category.keys() {
            if !self.per_category.contains_key(name) {
                names.push(name);
            }
        }
        let categories = names.into_iter().map(|name| {
            let pair = |m: &MetricsFile| m.per_category.get(name).map(|c| (c.bbox, c.segm));
            (format!("AP {name}"), pair(self), pair(other))
        });
        for (name, ours, theirs) in rows.chain(categories) {
            let mut cells = vec![name];
            for pick in [|p: (f64, f64)| p.0, |p: (f64, f64)| p.1] {
                let a = ours.map(pick);
                let b = theirs.map(pick);
                cells.push(a.map_or("-".into(), number));
                cells.push(b.map_or("-".into(), number));
                cells.push(change(a, b));
            }
            table.row(cells);
        }
        table.render()
    }
}

/// Three decimals; "-" for undefined (-1).
fn number(v: f64) -> String {
    if v < 0.0 {
        "-".into()
    } else {
        format!("{v:.3}")
    }
}

fn change(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a >= 0.0 && b >= 0.0 => {
            let d = a - b;
            // No sign on changes that round to nothing.
            if d.abs() < 0.0005 {
                "0.000".into()
            } else {
                format!("{d:+.3}")
            }
        }
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: f64) -> Stats {
        Stats {
            AP: v,
            AP50: v,
            AP75: v,
            APs: -1.0,
            APm: v,
            APl: v,
            AR1: v,
            AR10: v,
            AR100: v,
            ARs: -1.0,
            ARm: v,
            ARl: v,
        }
    }

    fn file(v: f64, category: &str) -> MetricsFile {
        MetricsFile {
            bbox: stats(v),
            segm: stats(v / 2.0),
            per_category: BTreeMap::from([(
                category.to_string(),
                CategoryScores {
                    bbox: v,
                    segm: v / 2.0,
                },
            )]),
        }
    }

    #[test]
    fn the_table_shows_every_number() {
        let text = file(0.5, "orange").table();
        assert!(text.contains("AP50"), "{text}");
        assert!(text.contains("0.500"), "{text}");
        assert!(text.contains("0.250"), "{text}");
        assert!(text.contains("AP orange"), "{text}");
    }

    #[test]
    fn the_comparison_shows_the_change() {
        let text = file(0.6, "orange").comparison(&file(0.5, "cup"));
        let ap = text
            .lines()
            .find(|l| l.starts_with("AP "))
            .unwrap_or_default();
        assert!(ap.contains("+0.100"), "{text}");
        assert!(text.contains("AP cup"), "{text}");
        let aps = text
            .lines()
            .find(|l| l.starts_with("APs"))
            .unwrap_or_default();
        assert!(!aps.contains('+'), "{text}");
    }
}
