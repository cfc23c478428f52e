//! The table of figures (`figures.json`, data): for each one, what the emulator does, the
//! baseline it is measured against, and the target. From this one table come the row
//! labels and verdicts of `certadm-emu bench` and the table of the module's documentation
//! (`figures.md`, generated: `CERTADM_EMU_BLESS=1 cargo test --lib bench::figures`
//! rewrites it).

use super::{Row, Target};
use serde::Deserialize;
use std::sync::LazyLock;

/// One figure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// Its number (`1`, `1d`, `13b`).
    pub id: String,
    /// Its label in the output of `certadm-emu bench`.
    pub label: String,
    /// What the emulator does (the documentation's words).
    pub emulator: String,
    /// What the baseline does.
    pub baseline: String,
    /// What the ratio is held to.
    pub target: Target,
    /// What the ratio compares (`the time`, `the throughput`, `the rate`, `the budget`).
    pub of: String,
}

impl Figure {
    /// The figure's row: the two measures as shown and their ratio.
    pub(crate) fn row(&self, emulator: String, baseline: String, ratio: f64) -> Row {
        Row::new(
            format!("{:<3}{}", self.id, self.label),
            emulator,
            baseline,
            ratio,
            self.target.clone(),
        )
    }

    /// The row of a figure whose two measures are of one kind: both shown with `unit`,
    /// the ratio is emulator / baseline.
    pub(crate) fn compare(&self, emulator: f64, baseline: f64, unit: fn(f64) -> String) -> Row {
        self.row(unit(emulator), unit(baseline), emulator / baseline)
    }

    /// The documentation's target column.
    fn target_text(&self) -> String {
        match &self.target {
            Target::AtMost(v) => format!("≤ {v}× {}", self.of),
            Target::AtLeast(v) => format!("≥ {v}× {}", self.of),
            Target::Info(_) => "reported".into(),
        }
    }
}

/// Every figure, in the order of the table (`figures.json`).
pub fn all() -> &'static [Figure] {
    static ALL: LazyLock<Vec<Figure>> = LazyLock::new(|| {
        serde_json::from_str(include_str!("figures.json"))
            .expect("figures.json is checked by a test")
    });
    &ALL
}

/// The number of a figure id (`13` of `13b`).
pub fn number(id: &str) -> Option<u32> {
    let digits = id.len() - id.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    id[..digits].parse().ok()
}

/// The figure numbered `id`.
///
/// # Panics
/// If the table has no such figure (a test checks every figure the bench names).
pub fn figure(id: &str) -> &'static Figure {
    all()
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("figures.json has no figure {id}"))
}

/// The documentation's table of [`all`] (Markdown).
pub fn markdown() -> String {
    let mut s = String::from("| # | emulator | baseline | target |\n|---|---|---|---|\n");
    for f in all() {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            f.id,
            f.emulator,
            f.baseline,
            f.target_text()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `figures.md` (included in the module's documentation) is the table's rendering.
    #[test]
    fn the_documented_table_is_generated_from_the_figures() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bench/figures.md");
        let want = markdown();
        if std::env::var("CERTADM_EMU_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            have, want,
            "{path} is out of date: CERTADM_EMU_BLESS=1 cargo test --lib bench::figures"
        );
    }

    #[test]
    fn figure_numbers_are_unique() {
        let all = all();
        for (i, f) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|g| g.id != f.id),
                "figure {} twice",
                f.id
            );
        }
    }

    /// Every `figure("…")` of the bench's code is in the table, and every figure of the
    /// table is measured once.
    #[test]
    fn the_bench_measures_every_figure_of_the_table_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bench");
        let mut named = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("figures.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("figure(\"").skip(1) {
                    named.push(piece.split('"').next().unwrap().to_string());
                }
            }
        }
        named.sort();
        let mut ids: Vec<String> = all().iter().map(|f| f.id.clone()).collect();
        ids.sort();
        assert_eq!(named, ids);
    }
}
