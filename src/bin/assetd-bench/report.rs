//! The final table: one row per figure, printed at the end of the run
//! (also after an error or Ctrl-C).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

/// One line of the final table.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub assetd: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// `None`: no target, or the figure failed.
    pub met: Option<bool>,
}

impl Row {
    /// A figure without a baseline: only assetd's value and its target.
    pub fn target_only(figure: String, assetd: String, target: &str, met: bool) -> Self {
        Self {
            figure,
            assetd,
            baseline: "—".into(),
            ratio: "—".into(),
            target: target.into(),
            met: Some(met),
        }
    }

    /// A figure that could not be measured.
    pub fn failed(figure: &str) -> Self {
        Self {
            figure: figure.to_string(),
            assetd: "error".into(),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            met: None,
        }
    }
}

/// The rows so far; figures add to it from the bench task.
#[derive(Default)]
pub struct Report {
    rows: Mutex<Vec<Row>>,
}

impl Report {
    pub fn add(&self, row: Row) {
        self.rows.lock().expect("rows").push(row);
    }

    /// Prints the rows as a Markdown table with a summary line; nothing
    /// when no figure got as far as a row.
    pub fn print_table(&self, quick: bool) {
        let rows = self.rows.lock().expect("rows").clone();
        if rows.is_empty() {
            return;
        }
        print!("{}", render(&rows, quick));
        let _ = std::io::stdout().flush();
    }
}

/// The table and its summary line, columns padded to their widest cell.
fn render(rows: &[Row], quick: bool) -> String {
    let header = ["figure", "assetd", "baseline", "ratio", "target", "met?"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                r.assetd.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "—".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(&widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s
    };
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", line(&header.map(String::from)));
    let _ = writeln!(
        out,
        "|{}",
        widths
            .iter()
            .map(|w| format!("{}|", "-".repeat(w + 2)))
            .collect::<String>()
    );
    for row in &cells {
        let _ = writeln!(out, "{}", line(row));
    }
    let missed = rows.iter().filter(|r| r.met == Some(false)).count();
    let _ = writeln!(
        out,
        "\n{} figure(s), {} target(s) met, {missed} missed{}",
        rows.len(),
        rows.iter().filter(|r| r.met == Some(true)).count(),
        if quick {
            " (QUICK mode: sizes and runs reduced)"
        } else {
            ""
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_and_counts_targets() {
        let rows = [
            Row {
                figure: "a".into(),
                assetd: "1 ms".into(),
                baseline: "2 ms".into(),
                ratio: "0.50×".into(),
                target: "≤ 1.10×".into(),
                met: Some(true),
            },
            Row::failed("bb"),
        ];
        let want = "
| figure | assetd | baseline | ratio | target  | met? |
|--------|--------|----------|-------|---------|------|
| a      | 1 ms   | 2 ms     | 0.50× | ≤ 1.10× | yes  |
| bb     | error  |          |       |         | —    |

2 figure(s), 1 target(s) met, 0 missed
";
        assert_eq!(render(&rows, false), want);
        assert!(render(&rows, true).ends_with("0 missed (QUICK mode: sizes and runs reduced)\n"));
    }
}
