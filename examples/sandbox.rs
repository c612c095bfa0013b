//! A parser of untrusted bytes that, on a crafted input, tries to phone
//! home: to open a connection, run a shell and drop a file. Under a
//! sandbox each attempt is refused, the parser's result still comes back,
//! and the listener it aimed at never hears from it. Then the strictest
//! policy: anything beyond computing kills the child with `SIGSYS`.
//!
//! Run with `cargo run --example sandbox --features sandbox` (Linux 6.7 or
//! later with Landlock enabled for the deny policies; elsewhere it says
//! what is missing).

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mem_isolate::errors::{CallableDidNotExecuteError, CallableStatusUnknownError};
use mem_isolate::{Isolate, MemIsolateError, Sandbox};

/// What the parser hands back: a count of records, and what its hidden
/// payload managed to do.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Parsed {
    records: usize,
    payload: Vec<String>,
}

/// Stands in for a C decoder with a memory-safety bug: an input that
/// starts with `EXPLOIT` takes it over, and the attacker's code tries to
/// reach out before returning a plausible result.
fn parse_untrusted(input: &[u8], home: SocketAddr) -> Parsed {
    let mut payload = Vec::new();
    if input.starts_with(b"EXPLOIT") {
        let connect = std::net::TcpStream::connect_timeout(&home, Duration::from_secs(1));
        payload.push(format!("phone home to {home}: {}", outcome(connect)));
        let shell = std::process::Command::new("sh").args(["-c", "id"]).output();
        payload.push(format!("run a shell: {}", outcome(shell)));
        let path = std::env::temp_dir().join("mem-isolate-sandbox-example-dropped");
        payload.push(format!(
            "drop a file: {}",
            outcome(std::fs::write(&path, b"pwned"))
        ));
    }
    let records = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    Parsed { records, payload }
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "DONE".to_string(),
        Err(e) => format!("refused ({e})"),
    }
}

fn main() -> Result<(), MemIsolateError> {
    // The attacker's server, on loopback: it counts who knocks.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
    let home = listener.local_addr().expect("listener address");
    let knocks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&knocks);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.read(&mut [0u8; 16]);
        }
    });

    let isolate = Isolate::new().timeout(Duration::from_secs(5)).sandbox(
        Sandbox::new()
            .deny_network()
            .deny_exec()
            .read_only_filesystem(),
    );
    for input in [&b"a\nb\nc\n"[..], b"EXPLOIT\nx\ny\n"] {
        let shown = String::from_utf8_lossy(&input[..input.len().min(7)]).into_owned();
        match isolate.run(move || parse_untrusted(input, home)) {
            Ok(parsed) => {
                println!("{shown:?}: {} records", parsed.records);
                for attempt in &parsed.payload {
                    println!("    payload tried to {attempt}");
                    assert!(!attempt.ends_with("DONE"), "the sandbox let this through");
                }
            }
            Err(MemIsolateError::CallableDidNotExecute(
                CallableDidNotExecuteError::SandboxUnsupported(why),
            )) => {
                println!("this system cannot enforce the sandbox ({why}); nothing was run");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    // Give a connection that got through time to be counted.
    std::thread::sleep(Duration::from_millis(100));
    let heard = knocks.load(Ordering::SeqCst);
    println!("the listener heard from {heard} callers");
    assert_eq!(heard, 0, "the sandbox let a connection through");

    // The strictest policy: compute only, and the first refused call ends
    // the child. No second try for the exploit.
    let strict = Isolate::new()
        .timeout(Duration::from_secs(5))
        .sandbox(Sandbox::new().compute_only().kill_on_violation());
    match strict.run(move || parse_untrusted(b"EXPLOIT\n", home)) {
        Err(MemIsolateError::CallableStatusUnknown(
            CallableStatusUnknownError::ChildProcessKilledBySignal(libc::SIGSYS),
        )) => println!("compute_only: the exploit was killed by SIGSYS at its first system call"),
        Err(MemIsolateError::CallableDidNotExecute(
            CallableDidNotExecuteError::SandboxUnsupported(why),
        )) => println!("compute_only cannot be enforced here ({why}); nothing was run"),
        other => println!("compute_only: unexpected {other:?}"),
    }
    let clean = strict.run(|| parse_untrusted(b"one\ntwo\n", home))?;
    println!(
        "compute_only: a clean input still parses: {} records",
        clean.records
    );
    Ok(())
}
