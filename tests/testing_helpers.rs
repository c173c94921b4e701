//! Tests of `hivent::testing`: the emit matchers (passing and failing) and inline delivery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use hivent::testing::{emit, expect, includes};
use hivent::{Config, EmitOptions, Hivent};
use serde_json::json;
use support::{record, Call, Recorder};

fn inline(service: &str, recorder: &std::sync::Arc<Recorder>) -> Hivent {
    hivent::testing::inline(
        Config::builder()
            .client_id(service)
            .partition_count(2)
            .life_cycle_event_handler(recorder.clone())
            .build()
            .unwrap(),
    )
}

fn emits_order(hivent: &Hivent) {
    hivent
        .signal("order:placed")
        .unwrap()
        .emit_with(
            &json!({"order": {"id": 7, "lines": [1, 2]}, "total": 12}),
            EmitOptions::version(2).key("7"),
        )
        .unwrap();
}

/// `to(emit(name))` passes when the signal was emitted, with or without version and payload.
#[test]
fn matcher_passes_on_matching_emits() {
    let h = inline("shop", &Recorder::new());
    expect(&h, || emits_order(&h)).to(emit("order:placed"));
    expect(&h, || emits_order(&h)).to(emit("order:placed").version(2));
    expect(&h, || emits_order(&h)).to(emit("order:placed").with(json!({"order": {"id": 7}})));
    expect(&h, || emits_order(&h)).not_to(emit("order:cancelled"));
    expect(&h, || emits_order(&h)).not_to(emit("order:placed").version(1));
}

/// A failed `to` names what was expected and lists what was emitted instead.
#[test]
fn failed_match_lists_what_was_emitted() {
    let h = inline("shop", &Recorder::new());
    let outcome = expect(&h, || emits_order(&h));
    assert_eq!(
        outcome.check(&emit("order:placed").version(3)).unwrap_err(),
        "expected an emit of \"order:placed\" version 3, but these were emitted:\n  - \"order:placed\" version 2: {\"order\":{\"id\":7,\"lines\":[1,2]},\"total\":12}"
    );
    assert_eq!(
        outcome.check(&emit("order:placed").with(json!({"total": 13}))).unwrap_err(),
        "expected an emit of \"order:placed\" with a payload including {\"total\":13}, but these were emitted:\n  - \"order:placed\" version 2: {\"order\":{\"id\":7,\"lines\":[1,2]},\"total\":12}"
    );
    let nothing = expect(&h, || ());
    assert_eq!(
        nothing.check(&emit("order:placed")).unwrap_err(),
        "expected an emit of \"order:placed\", but nothing was emitted"
    );
}

/// A failed `not_to` names the event that should not have been emitted.
#[test]
fn failed_negation_lists_the_match() {
    let h = inline("shop", &Recorder::new());
    let err = expect(&h, || emits_order(&h))
        .check_not(&emit("order:placed"))
        .unwrap_err();
    assert!(
        err.starts_with("expected no emit of \"order:placed\", but these were emitted:"),
        "{err}"
    );
}

/// The panicking forms panic with the same message.
#[test]
#[should_panic(expected = "expected an emit of \"nope\", but these were emitted")]
fn to_panics_on_mismatch() {
    let h = inline("shop", &Recorder::new());
    expect(&h, || emits_order(&h)).to(emit("nope"));
}

/// The negated panicking form panics when the event was emitted.
#[test]
#[should_panic(expected = "expected no emit of \"order:placed\"")]
fn not_to_panics_on_match() {
    let h = inline("shop", &Recorder::new());
    expect(&h, || emits_order(&h)).not_to(emit("order:placed"));
}

/// Deep inclusion: nested objects are subsets, arrays and scalars equal.
#[test]
fn deep_include_rules() {
    let actual = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
    assert!(includes(&actual, &json!({})));
    assert!(includes(&actual, &json!({"a": {"b": 1}})));
    assert!(includes(&actual, &json!({"a": {"c": [1, 2]}, "d": "x"})));
    assert!(!includes(&actual, &json!({"a": {"c": [1]}})));
    assert!(!includes(&actual, &json!({"a": {"b": 2}})));
    assert!(!includes(&actual, &json!({"e": null})));
}

/// In inline mode an emit is delivered to the receivers before `emit` returns, with
/// life-cycle calls; a failing handler's event lands in the dead letter queue.
#[test]
fn inline_delivery_with_life_cycle() {
    let recorder = Recorder::new();
    let h = inline("inline-svc", &recorder);
    let seen = record(&h, "user:created");
    h.signal("user:failed")
        .unwrap()
        .receive(|_| Err("nope".into()));
    let event = h
        .signal("user:created")
        .unwrap()
        .emit(&json!({"id": 1}), 1)
        .unwrap();
    assert_eq!(*seen.lock(), [event]);
    h.signal("user:failed")
        .unwrap()
        .emit(&json!({"id": 2}), 1)
        .unwrap();
    let calls = recorder.calls();
    assert!(
        matches!(&calls[0], Call::Registered { client_id, signals, partition_count: 2 }
        if client_id == "inline-svc" && signals == &[("user:created".to_string(), None), ("user:failed".to_string(), None)]),
        "{calls:?}"
    );
    assert!(calls.contains(&Call::Succeeded {
        name: "user:created".into(),
        version: Some(1),
        payload: json!({"id": 1})
    }));
    assert!(
        matches!(recorder.failures().as_slice(), [Call::Failed { error, queue, .. }]
        if error.ends_with("failed: nope") && queue.ends_with(":dead_letter")),
        "{calls:?}"
    );
}

/// A handler that emits while handling is delivered too, after it returns.
#[test]
fn inline_delivery_of_nested_emits() {
    let h = inline("nested", &Recorder::new());
    let seen = record(&h, "second");
    let inner = h.clone();
    h.signal("first").unwrap().receive(move |e| {
        inner.signal("second").unwrap().emit(&e.payload, 1)?;
        Ok(())
    });
    h.signal("first")
        .unwrap()
        .emit(&json!({"x": 1}), 1)
        .unwrap();
    assert_eq!(seen.lock().len(), 1);
    assert_eq!(seen.lock()[0].payload, json!({"x": 1}));
}

/// In a `#[tokio::test]` (a current-thread runtime), an inline handle's async handler
/// runs before `emit_async` returns: its future goes to hivent's own runtime, since the
/// test's one thread is the one waiting for it.
#[tokio::test]
async fn inline_async_handlers_run_within_a_current_thread_test() {
    let recorder = Recorder::new();
    let hivent = inline("inline-async", &recorder);
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    hivent
        .signal("order:placed")
        .unwrap()
        .receive_async(move |event| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                sink.lock().push(event.payload["order"].clone());
                Ok(())
            }
        });
    let signal = hivent.signal("order:placed").unwrap();
    for order in 1..=3 {
        signal
            .emit_async(&json!({"order": order}), 1)
            .await
            .unwrap();
        assert_eq!(
            seen.lock().len(),
            order,
            "handled before emit_async returned"
        );
    }
    assert_eq!(*seen.lock(), [json!(1), json!(2), json!(3)]);
    assert_eq!(recorder.successes().len(), 3);
}
