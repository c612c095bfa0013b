//! The `tracing` feature: the parent emits events with structured fields
//! (pid, result bytes, transport, elapsed time, outcome) as it forks, reaps
//! and finishes a call, inside a span named `execute_in_isolated_process`
//! as in 0.1. Nothing is emitted in the child (see the README's feature
//! flags for why).
//!
//! Run with `cargo run --example tracing --features tracing`.

use mem_isolate::execute_in_isolated_process;

fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let value = execute_in_isolated_process(|| vec![7u32; 50_000]).expect("the call succeeds");
    tracing::info!(len = value.len(), "got the value back");
    let err = execute_in_isolated_process(|| -> u8 { panic!("traced panic") }).unwrap_err();
    // Each level's Display says only its own part: print the chain.
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    tracing::info!(err = %chain, "got the error back");
}
