//! Every call leaves a `tracing` span on both sides, with the method and the
//! outcome, so an operator can follow a call from client to server.

mod common;

use std::sync::{Arc, Mutex};

use rpc_demo::services::CalculatorClient;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use common::TestServer;

/// What the recording layer saw: spans (name and fields) and events
/// (message, fields and the name of the span they happened in).
#[derive(Default)]
struct Seen {
    spans: Vec<(String, String)>,
    events: Vec<(String, String)>,
}

struct Recorder(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().spans.push((name, fields.0));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx
            .event_span(event)
            .map(|s| s.name().to_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().events.push((span, fields.0));
    }
}

// Current-thread runtime: client, server and handlers all run on this thread,
// under the subscriber set as this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn calls_are_traced_on_both_sides_with_method_and_outcome() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with(Recorder(seen.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let fx = TestServer::demo().await;
    let calc = CalculatorClient::new(fx.client().await);
    assert_eq!(calc.add(1.0, 2.0).await.unwrap(), 3.0);
    assert!(calc.div(1.0, 0.0).await.is_err());
    drop(calc);
    fx.shutdown().await;

    let seen = seen.lock().unwrap();
    let has_span = |name: &str, method: &str| {
        seen.spans
            .iter()
            .any(|(n, f)| n == name && f.contains(&format!("method={method}")))
    };
    for method in ["add", "div"] {
        assert!(
            has_span("rpc.client.call", method),
            "client span for {method}: {:?}",
            seen.spans
        );
        assert!(
            has_span("rpc.call", method),
            "server span for {method}: {:?}",
            seen.spans
        );
    }
    assert!(
        seen.spans.iter().any(|(n, f)| n == "rpc.call"
            && f.contains("service=\"Calculator\"")
            && f.contains("id=\"1\"")),
        "the server span names the service and the id: {:?}",
        seen.spans
    );
    let finished = |span: &str, outcome: &str| {
        seen.events.iter().any(|(s, f)| {
            s == span
                && f.contains("call finished")
                && f.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(
        finished("rpc.call", "ok"),
        "server ok event: {:?}",
        seen.events
    );
    assert!(
        finished("rpc.call", "error"),
        "server error event: {:?}",
        seen.events
    );
    assert!(
        finished("rpc.client.call", "ok"),
        "client ok event: {:?}",
        seen.events
    );
    assert!(
        finished("rpc.client.call", "error"),
        "client error event: {:?}",
        seen.events
    );
    assert!(
        seen.events.iter().any(|(_, f)| f.contains("elapsed_us=")),
        "durations are recorded"
    );
}
