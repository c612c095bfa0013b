//! The `tracing` feature: structured fields on the parent's events, 0.1's
//! span name for a blocking call, and nothing from the child.

#![cfg(all(feature = "tracing", feature = "std"))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mem_isolate::{Isolate, execute_in_isolated_process};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event: its message, its fields (as text) and the name of the span
/// it was emitted in.
#[derive(Debug, Clone, Default)]
struct Seen {
    message: String,
    fields: BTreeMap<String, String>,
    span: Option<String>,
    /// The process that recorded it.
    pid: u32,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A span's name and fields.
type SpanSeen = (String, BTreeMap<String, String>);

#[derive(Clone, Default)]
struct Collector {
    events: Arc<Mutex<Vec<Seen>>>,
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    /// Also appends the emitting process's pid, a line per event, here.
    log: Option<Arc<std::fs::File>>,
}

impl<S> Layer<S> for Collector
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.spans
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields.0));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        if let Some(log) = &self.log {
            use std::io::Write;
            let line = format!("{}\n", std::process::id());
            (&**log).write_all(line.as_bytes()).unwrap();
        }
        self.events.lock().unwrap().push(Seen {
            message,
            fields: fields.0,
            span,
            pid: std::process::id(),
        });
    }
}

/// Runs `f` with a collector as this thread's subscriber.
fn collect(f: impl FnOnce()) -> Collector {
    let collector = Collector::default();
    let subscriber = tracing_subscriber::registry().with(collector.clone());
    tracing::subscriber::with_default(subscriber, f);
    collector
}

fn finished(c: &Collector) -> Vec<Seen> {
    c.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.message == "call finished")
        .cloned()
        .collect()
}

#[test]
fn a_finished_call_is_summed_up_in_structured_fields() {
    let c = collect(|| {
        assert_eq!(execute_in_isolated_process(|| 7u32), Ok(7));
        assert_eq!(
            execute_in_isolated_process(|| vec![1u8; 300_000]).map(|v| v.len()),
            Ok(300_000)
        );
    });
    let done = finished(&c);
    assert_eq!(done.len(), 2, "{done:?}");
    for e in &done {
        for field in ["pid", "result_bytes", "transport", "elapsed_us", "outcome"] {
            assert!(e.fields.contains_key(field), "{field} missing: {e:?}");
        }
        assert_eq!(e.fields["outcome"], "value");
        assert_eq!(e.span.as_deref(), Some("execute_in_isolated_process"));
        // Fields, not `Debug` dumps of the crate's internals.
        assert!(e.fields.values().all(|v| !v.contains('{')), "{e:?}");
        assert_eq!(e.pid, std::process::id(), "emitted in the parent");
    }
    // A small value comes back through the shared page; a large one
    // through the spill file or the pipe, whichever the platform uses.
    assert_eq!(done[0].fields["result_bytes"], "1");
    assert_eq!(done[0].fields["transport"], "shared page");
    assert!(done[1].fields["result_bytes"].parse::<usize>().unwrap() > 300_000);
    assert_ne!(done[1].fields["transport"], "shared page");
    let forked: Vec<_> = c
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.message == "forked")
        .map(|e| e.fields["pid"].clone())
        .collect();
    assert_eq!(
        forked,
        [done[0].fields["pid"].clone(), done[1].fields["pid"].clone()]
    );
}

#[test]
fn a_failed_call_names_its_outcome_and_the_exit() {
    let c = collect(|| {
        let r = Isolate::new().run(|| -> u8 { std::process::exit(109) });
        assert!(r.is_err());
    });
    let done = finished(&c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].fields["outcome"], "UnexpectedChildExitStatus");
    let reaped: Vec<_> = c
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.message == "reaped the child")
        .cloned()
        .collect();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].fields["exit_code"], "109");
}

#[test]
fn the_child_emits_nothing() {
    // Every event also goes, with the pid of the process that emitted it,
    // to a file both processes share (an event from the child could not
    // reach the parent's vector, but it would reach the file). Calls that
    // end every way the child can: a value (page, large), a panic, a
    // failed serialization, an exit.
    let path = std::env::temp_dir().join(format!("mem-isolate-trace-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let collector = Collector {
        log: Some(Arc::new(file)),
        ..Collector::default()
    };
    let subscriber = tracing_subscriber::registry().with(collector.clone());
    tracing::subscriber::with_default(subscriber, || {
        let _ = execute_in_isolated_process(|| 1u8);
        let _ = execute_in_isolated_process(|| vec![2u8; 200_000]);
        let _ = execute_in_isolated_process(|| -> u8 { panic!("traced") });
        let _ = Isolate::new().spawn(|| 3u8).unwrap().join();
        let _ = execute_in_isolated_process(|| -> u8 { std::process::exit(4) });
    });
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let pids: Vec<&str> = log.lines().collect();
    let me = std::process::id().to_string();
    assert!(
        pids.len() >= 5 * 3,
        "forking, forked, ... per call: {pids:?}"
    );
    assert!(
        pids.iter().all(|p| *p == me),
        "an event from another process: {pids:?}"
    );
    assert_eq!(pids.len(), collector.events.lock().unwrap().len());
}

#[test]
fn a_blocking_call_keeps_the_span_name_of_0_1() {
    let c = collect(|| {
        let mut buffer = [0u8; 8];
        assert_eq!(
            mem_isolate::execute_in_isolated_process_with_buffer(&mut buffer, || 3u8),
            Ok(3)
        );
    });
    let spans = c.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].0, "execute_in_isolated_process");
    assert_eq!(spans[0].1["api"], "run_with_buffer");
}
