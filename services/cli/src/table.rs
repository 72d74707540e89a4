//! Plain-text tables for the terminal: the items of one job, and a summary of many.

use crate::document::{Item, JobDocument};

/// Left-aligned text columns separated by two spaces, numbers right-aligned.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `columns`: header and whether the column is right-aligned.
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Self {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let parts: Vec<String> = cells
                .zip(&widths)
                .zip(&self.right)
                .map(|((cell, &w), &right)| {
                    if right {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&mut self.headers.iter().copied());
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
            out.push('\n');
        }
        out
    }
}

/// Items sorted by score, best first.
pub fn sorted_items(items: &[Item]) -> Vec<&Item> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    sorted
}

/// One row per item: category, score, box, area, polygon count.
pub fn items_table(items: &[Item]) -> String {
    let mut t = Table::new(&[
        ("#", true),
        ("category", false),
        ("id", true),
        ("score", true),
        ("box x,y,w,h", false),
        ("area", true),
        ("polygons", true),
    ]);
    for (i, item) in sorted_items(items).into_iter().enumerate() {
        let [x, y, w, h] = item.bbox;
        t.row(vec![
            (i + 1).to_string(),
            item.category_name.clone(),
            item.category_id.to_string(),
            format!("{:.2}", item.score),
            format!("{x:.0},{y:.0},{w:.0},{h:.0}"),
            format!("{:.0}", item.area),
            item.polygons.len().to_string(),
        ]);
    }
    t.render()
}

/// One line about a finished job, above its items table.
pub fn job_header(doc: &JobDocument, items: usize) -> String {
    let time = doc
        .processing_time
        .map(|t| format!(" in {t:.2}s"))
        .unwrap_or_default();
    format!(
        "job {} {}{} — model {} — {} item{}: {}",
        doc.job_id,
        doc.status().label(),
        time,
        doc.model_identifier,
        items,
        if items == 1 { "" } else { "s" },
        doc.message,
    )
}

/// The best few categories of a job, e.g. `orange 0.93, cup 0.81`.
pub fn top_categories(items: &[Item], n: usize) -> String {
    let sorted = sorted_items(items);
    let mut parts: Vec<String> = sorted
        .iter()
        .take(n)
        .map(|i| format!("{} {:.2}", i.category_name, i.score))
        .collect();
    if sorted.len() > n {
        parts.push(format!("+{}", sorted.len() - n));
    }
    parts.join(", ")
}

/// What happened to one file of `submit-dir`.
pub struct SummaryRow {
    pub file: String,
    pub job_id: String,
    pub status: String,
    pub items: Option<Vec<Item>>,
    pub seconds: Option<f64>,
    pub note: String,
}

pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut t = Table::new(&[
        ("file", false),
        ("status", false),
        ("items", true),
        ("time", true),
        ("found / message", false),
        ("job", false),
    ]);
    for r in rows {
        let found = match &r.items {
            Some(items) if !items.is_empty() => top_categories(items, 3),
            Some(_) => "(nothing found)".into(),
            None => r.note.clone(),
        };
        t.row(vec![
            r.file.clone(),
            r.status.clone(),
            r.items
                .as_ref()
                .map(|i| i.len().to_string())
                .unwrap_or_else(|| "-".into()),
            r.seconds
                .map(|s| format!("{s:.2}s"))
                .unwrap_or_else(|| "-".into()),
            found,
            r.job_id.clone(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, score: f64) -> Item {
        Item {
            id: 0,
            image_id: "a.jpg".into(),
            category_id: 55,
            category_name: name.into(),
            score,
            bbox: [1.4, 2.6, 30.0, 40.0],
            area: 1234.0,
            iscrowd: 0,
            polygons: vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]; 2],
            size: [100, 100],
        }
    }

    #[test]
    fn items_table_sorts_by_score_and_aligns() {
        let out = items_table(&[item("cup", 0.5), item("orange", 0.93)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "#  category  id  score  box x,y,w,h  area  polygons",
                "-  --------  --  -----  -----------  ----  --------",
                "1  orange    55   0.93  1,3,30,40    1234         2",
                "2  cup       55   0.50  1,3,30,40    1234         2",
            ]
        );
    }

    #[test]
    fn empty_items_table_has_only_headers() {
        assert_eq!(items_table(&[]).lines().count(), 2);
    }

    #[test]
    fn top_categories_counts_the_rest() {
        let items = [item("a", 0.1), item("b", 0.9), item("c", 0.5)];
        assert_eq!(top_categories(&items, 2), "b 0.90, c 0.50, +1");
    }

    #[test]
    fn summary_shows_messages_for_failures() {
        let rows = [
            SummaryRow {
                file: "fruits.jpg".into(),
                job_id: "j1".into(),
                status: "success".into(),
                items: Some(vec![item("orange", 0.9)]),
                seconds: Some(1.25),
                note: String::new(),
            },
            SummaryRow {
                file: "bad.jpg".into(),
                job_id: "-".into(),
                status: "error".into(),
                items: None,
                seconds: None,
                note: "bad.jpg is not an image".into(),
            },
        ];
        let out = summary_table(&rows);
        assert!(
            out.contains("fruits.jpg  success      1  1.25s  orange 0.90"),
            "{out}"
        );
        assert!(
            out.contains("bad.jpg     error        -      -  bad.jpg is not an image"),
            "{out}"
        );
    }
}
