//! The `tracing` feature: the parent emits events as it forks, reads, reaps
//! and decodes. Nothing is emitted in the child.
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
    tracing::info!(%err, "got the error back");
}
