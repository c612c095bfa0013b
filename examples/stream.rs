//! Rows from a parser that leaks and, on a bad line, crashes: each row
//! reaches the parent as soon as it is parsed, and the rows parsed before
//! the crash are kept. The parent's memory stays flat however many rows go
//! by.
//!
//! Run with `cargo run --example stream`.

use std::time::Duration;

use mem_isolate::{Isolate, MemIsolateError, Sender};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    line: usize,
    name: String,
    total: u64,
}

/// Stands in for a C parser that leaks a buffer per line and dies on a
/// line it cannot handle.
fn leaky_parse(line: usize, text: &str) -> Row {
    std::mem::forget(vec![0u8; 64 * 1024]); // the leak, per line
    if text.contains('!') {
        // A crash, not a panic: nothing in the child can catch it.
        std::process::abort();
    }
    let (name, numbers) = text.split_once(':').unwrap_or((text, ""));
    let total = numbers
        .split(',')
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum();
    Row {
        line,
        name: name.to_string(),
        total,
    }
}

fn parse_file(lines: &'static [&'static str]) -> Result<Vec<Row>, MemIsolateError> {
    let isolate = Isolate::new().timeout(Duration::from_secs(60));
    let rows = isolate.stream(move |tx: &mut Sender<Row>| {
        for (i, text) in lines.iter().enumerate() {
            tx.send(&leaky_parse(i + 1, text)).ok();
        }
    })?;
    let mut kept = Vec::new();
    for row in rows {
        match row {
            Ok(row) => {
                println!("  row {:>2}: {:<6} {}", row.line, row.name, row.total);
                kept.push(row);
            }
            // The last item may be the error that ended the stream.
            Err(e) => {
                println!("  the parser died after {} rows: {e}", kept.len());
                println!("  ({e:?})");
            }
        }
    }
    Ok(kept)
}

fn main() -> Result<(), MemIsolateError> {
    println!("a clean file:");
    let rows = parse_file(&["apples: 1, 2, 3", "pears: 10", "plums: 4, 4"])?;
    assert_eq!(rows.len(), 3);

    println!("a file with a line the parser cannot take:");
    let rows = parse_file(&["figs: 7", "dates: 1, 1", "kiwis: 5!", "limes: 2"])?;
    assert_eq!(rows.len(), 2, "the rows before the crash are kept");

    println!("a long one: 100 000 rows, read as they come");
    let isolate = Isolate::new();
    let mut count = 0u64;
    let mut sum = 0u64;
    for n in isolate.stream(|tx: &mut Sender<u64>| {
        for i in 0..100_000u64 {
            std::mem::forget(vec![0u8; 1024]); // 100 MB leaked in the child
            tx.send(&i).ok();
        }
    })? {
        sum += n?;
        count += 1;
    }
    println!("  {count} rows, sum {sum}; the leak died with the child");
    Ok(())
}
