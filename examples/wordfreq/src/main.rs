//! Counts word frequencies: a map step over input files and a merge step.
//!
//!   wordfreq <file> [top]        counts the words of one file; writes the
//!                                full table to /output/freq.tsv and prints
//!                                a summary with the `top` most frequent words
//!   wordfreq merge <dir> [top]   adds up <dir>/<i>/files/output/freq.tsv of a
//!                                batch's OUT directory, prints the `top` rows
//!
//! Words are runs of alphanumeric characters (Unicode-aware), lowercased.
//! Output is sorted by count, then word, so it is the same on every run.

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage: wordfreq <file> [top]\n       wordfreq merge <dir> [top]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("merge") => merge(args.get(1), args.get(2)),
        Some(_) => count_file(&args[0], args.get(1)),
        None => Err((2, "missing file".to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, why)) => {
            eprintln!("wordfreq: {why}");
            if code == 2 {
                eprintln!("{USAGE}");
            }
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn top_n(value: Option<&String>) -> Result<usize, Failure> {
    match value {
        None => Ok(10),
        Some(v) => v
            .parse()
            .map_err(|_| (2, format!("top must be a number, got {v:?}"))),
    }
}

fn count_words(text: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

fn sorted(counts: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

fn count_file(path: &str, top: Option<&String>) -> Result<(), Failure> {
    let top = top_n(top)?;
    let bytes = std::fs::read(path).map_err(|e| (1, format!("{path}: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let rows = sorted(count_words(&text));
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let table: String = rows.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect();
    std::fs::write("/output/freq.tsv", table).map_err(|e| (1, format!("/output/freq.tsv: {e}")))?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let shown: Vec<String> = rows
        .iter()
        .take(top)
        .map(|(w, c)| format!("{w}:{c}"))
        .collect();
    println!(
        "{name}: {total} words, {} distinct; top: {}",
        rows.len(),
        shown.join(" ")
    );
    Ok(())
}

fn merge(dir: Option<&String>, top: Option<&String>) -> Result<(), Failure> {
    let dir = dir.ok_or((2, "missing dir".to_string()))?;
    let top = top_n(top)?;
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut tables = 0;
    // Task directories are numbered 0, 1, 2, … with no gaps.
    loop {
        let path = format!("{dir}/{tables}/files/output/freq.tsv");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err((1, format!("{path}: {e}"))),
        };
        for (n, line) in text.lines().enumerate() {
            let parsed = line
                .split_once('\t')
                .and_then(|(w, c)| Some((w, c.parse::<u64>().ok()?)));
            let (word, count) =
                parsed.ok_or((1, format!("{path}:{}: not `word<TAB>count`", n + 1)))?;
            *totals.entry(word.to_string()).or_insert(0) += count;
        }
        tables += 1;
    }
    if tables == 0 {
        return Err((
            1,
            format!("no {dir}/0/files/output/freq.tsv: is {dir} the OUT of a wordfreq batch?"),
        ));
    }
    let rows = sorted(totals);
    let total: u64 = rows.iter().map(|r| r.1).sum();
    println!("# {tables} files, {total} words, {} distinct", rows.len());
    for (word, count) in rows.iter().take(top) {
        println!("{word}\t{count}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        let rows = sorted(count_words("The cat, the HAT; the café. 42 cats!"));
        assert_eq!(rows[0], ("the".to_string(), 3));
        assert!(rows.contains(&("café".to_string(), 1)));
        assert!(rows.contains(&("42".to_string(), 1)));
        assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), 8);
    }
}
