//! Prompt enrichment (`POST /v1/enrich`) and its monitor: the context
//! block, freshness, the token budget, pass-through, the timeout path with a
//! deliberately slow (paused) Redis, and the feedback that switches
//! enrichment off where it does not help.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafer_host::clock::Clock;
use wafer_host::model::Timestamp;
use wafer_host::service::enrich::TaskConfig;
use wafer_tests::redis::PrivateRedis;
use wafer_tests::{Backend, TestApp, backend_tests, spare_port};

backend_tests!(
    the_block_holds_the_task_features_in_order_with_lists_shortened,
    stale_and_expired_values_are_left_out_by_the_threshold,
);

const PROMPT: &str = "Which shoes should I buy next?";

/// Entities `user` and `product`, and the three push groups the built-in
/// `product_recommendation` task reads.
async fn register_catalog(app: &TestApp) {
    for (entity, key) in [("user", "user_id"), ("product", "product_id")] {
        let (status, body) = app.put_json(&format!("/v1/entities/{entity}"), &json!({"join_keys": [key]})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let groups = [
        (
            "user_profile",
            "user",
            json!([{"name": "preferred_categories", "type": "string_list"}, {"name": "price_sensitivity", "type": "float64"},
                   {"name": "account_tier", "type": "string"}]),
        ),
        (
            "user_activity",
            "user",
            json!([{"name": "recent_purchases", "type": "string_list"}, {"name": "recently_viewed", "type": "string_list"}]),
        ),
        (
            "product_catalog",
            "product",
            json!([{"name": "category", "type": "string"}, {"name": "price", "type": "float64"},
                   {"name": "avg_rating", "type": "float64"}]),
        ),
    ];
    for (name, entity, features) in groups {
        let group = json!({"entity": entity, "features": features, "producer": {"kind": "push"},
                           "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 86400}});
        let (status, body) = app.put_json(&format!("/v1/feature-groups/{name}"), &group).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// An enabled task of `features` with the default threshold.
fn task(features: &[&str]) -> TaskConfig {
    TaskConfig {
        enabled: true,
        features: features.iter().map(|f| f.to_string()).collect(),
        freshness_threshold_seconds: 3600,
        description: String::new(),
    }
}

fn now(app: &TestApp) -> Timestamp {
    wafer_tests::harness::whole_second(app.clock.now())
}

async fn write(app: &TestApp, group: &str, entity: Value, age_secs: i64, values: Value) {
    let at = now(app).plus_secs(-age_secs).to_rfc3339();
    let body = json!({"feature_group": group, "rows": [{"entity": entity, "event_timestamp": at, "values": values}]});
    let (status, answer) = app.post_json("/v1/features/write", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// u1 and p9 with every feature of the task, written a minute ago.
async fn write_u1_p9(app: &TestApp) {
    let categories = ["running", "trail", "outdoor", "hiking", "camping", "yoga", "cycling"];
    write(
        app,
        "user_profile",
        json!({"user_id": "u1"}),
        60,
        json!({"preferred_categories": categories, "price_sensitivity": 0.35, "account_tier": "gold"}),
    )
    .await;
    write(
        app,
        "user_activity",
        json!({"user_id": "u1"}),
        60,
        json!({"recent_purchases": ["trail shoes", "wool socks"], "recently_viewed": ["gaiters"]}),
    )
    .await;
    write(
        app,
        "product_catalog",
        json!({"product_id": "p9"}),
        60,
        json!({"category": "footwear", "price": 129.99, "avg_rating": 4.6}),
    )
    .await;
}

async fn enrich(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.post_json("/v1/enrich", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn recommendation(extra: Value) -> Value {
    let mut body = json!({"prompt": PROMPT, "task_type": "product_recommendation",
                          "entities": {"user": "u1", "product": "p9"}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn dropped(answer: &Value) -> Vec<(String, String)> {
    answer["features_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["feature"].as_str().unwrap().to_string(), d["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// The block of the full task, as the README documents it. 254 characters
/// (10 + 76 + 46 + 26 + 21 + 16 + 18 + 29 + 12, counted line by line) = 64
/// estimated tokens.
const FULL_BLOCK: &str = "[Context]\n\
    - preferred_categories: [running, trail, outdoor, hiking, camping, +2 more]\n\
    - recent_purchases: [trail shoes, wool socks]\n\
    - price_sensitivity: 0.35\n\
    - category: footwear\n\
    - price: 129.99\n\
    - avg_rating: 4.6\n\
    - recently_viewed: [gaiters]\n\
    [/Context]\n\n";

async fn the_block_holds_the_task_features_in_order_with_lists_shortened(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_catalog(&app).await;
    write_u1_p9(&app).await;

    let answer = enrich(&app, recommendation(json!({}))).await;
    assert_eq!(answer["enriched_prompt"], json!(format!("{FULL_BLOCK}{PROMPT}")), "{answer}");
    assert_eq!(answer["feature_tokens_added"], json!(64));
    assert_eq!(answer["features_available"], json!(true));
    assert_eq!(answer["skipped_reason"], Value::Null);
    assert_eq!(
        answer["features_used"],
        json!([
            "user_profile:preferred_categories",
            "user_activity:recent_purchases",
            "user_profile:price_sensitivity",
            "product_catalog:category",
            "product_catalog:price",
            "product_catalog:avg_rating",
            "user_activity:recently_viewed"
        ])
    );
    assert!(answer["enrichment_latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{answer}");
    assert!(answer["enrichment_id"].as_str().is_some_and(|id| id.starts_with("enr_")), "{answer}");

    // 45 tokens: the first three lines are 170 characters = 43 tokens; a
    // fourth would make 191 = 48. The least important four are dropped.
    let answer = enrich(&app, recommendation(json!({"max_feature_tokens": 45}))).await;
    let three = "[Context]\n\
        - preferred_categories: [running, trail, outdoor, hiking, camping, +2 more]\n\
        - recent_purchases: [trail shoes, wool socks]\n\
        - price_sensitivity: 0.35\n\
        [/Context]\n\n";
    assert_eq!(answer["enriched_prompt"], json!(format!("{three}{PROMPT}")), "{answer}");
    assert_eq!(answer["feature_tokens_added"], json!(43));
    let over: Vec<String> =
        dropped(&answer).into_iter().filter(|(_, why)| why == "over_budget").map(|(f, _)| f).collect();
    assert_eq!(
        over,
        [
            "product_catalog:category",
            "product_catalog:price",
            "product_catalog:avg_rating",
            "user_activity:recently_viewed"
        ]
    );

    // The most important line alone is 98 characters = 25 tokens.
    let answer = enrich(&app, recommendation(json!({"max_feature_tokens": 24}))).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT));
    assert_eq!(answer["features_available"], json!(false));
    assert_eq!(answer["skipped_reason"], json!("budget_too_small"));
    assert_eq!(answer["feature_tokens_added"], json!(0));

    // Only the user named: the product's features have no entity.
    let answer = enrich(&app, recommendation(json!({"entities": {"user": {"user_id": "u1"}}}))).await;
    assert_eq!(answer["features_used"].as_array().unwrap().len(), 4, "{answer}");
    assert!(dropped(&answer).contains(&("product_catalog:price".into(), "no_entity".into())));
    // An unknown user: every value missing, the prompt untouched.
    let answer = enrich(&app, recommendation(json!({"entities": {"user": "nobody"}}))).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT));
    assert_eq!(answer["skipped_reason"], json!("no_fresh_features"));
    assert!(dropped(&answer).contains(&("user_profile:price_sensitivity".into(), "missing".into())));

    // Tasks without enrichment pass prompts through untouched.
    let answer = enrich(&app, json!({"prompt": PROMPT, "task_type": "haiku", "entities": {"user": "u1"}})).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT));
    assert_eq!(answer["skipped_reason"], json!("task_not_enabled"));
    assert_eq!(answer["features_used"], json!([]));
    // A task whose groups are not registered has nothing to add.
    let answer =
        enrich(&app, json!({"prompt": PROMPT, "task_type": "code_generation", "entities": {"user": "u1"}})).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT));
    assert_eq!(answer["skipped_reason"], json!("no_features"));
}

async fn stale_and_expired_values_are_left_out_by_the_threshold(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_catalog(&app).await;
    write_u1_p9(&app).await;
    // Activity two hours old: older than the task's 3600 s threshold but
    // within the group's max age of a day.
    write(
        &app,
        "user_activity",
        json!({"user_id": "u2"}),
        7200,
        json!({"recent_purchases": ["kettle"], "recently_viewed": ["mugs"]}),
    )
    .await;
    write(&app, "user_profile", json!({"user_id": "u2"}), 60, json!({"price_sensitivity": 0.8})).await;
    let body = json!({"prompt": PROMPT, "task_type": "product_recommendation", "entities": {"user": "u2"}});
    let answer = enrich(&app, body.clone()).await;
    assert_eq!(
        answer["enriched_prompt"],
        json!(format!("[Context]\n- price_sensitivity: 0.8\n[/Context]\n\n{PROMPT}"))
    );
    let left_out = dropped(&answer);
    assert!(left_out.contains(&("user_activity:recent_purchases".into(), "stale".into())), "{answer}");
    assert!(left_out.contains(&("user_profile:preferred_categories".into(), "missing".into())), "{answer}");

    // A request may allow older values.
    let mut relaxed = body.clone();
    relaxed["freshness_threshold_seconds"] = json!(10_800);
    let answer = enrich(&app, relaxed.clone()).await;
    assert_eq!(
        answer["features_used"],
        json!(["user_activity:recent_purchases", "user_profile:price_sensitivity", "user_activity:recently_viewed"])
    );

    // A day later everything is past the group's max age: expired values
    // are never used, whatever the threshold.
    app.clock.advance_secs(86_400);
    relaxed["freshness_threshold_seconds"] = json!(1_000_000);
    let answer = enrich(&app, relaxed).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT), "{answer}");
    assert_eq!(answer["skipped_reason"], json!("no_fresh_features"));
}

#[tokio::test]
async fn bad_requests_are_refused_and_the_task_mapping_is_configurable() {
    let app = TestApp::spawn_with(|config| {
        let tasks = &mut config.serving.enrichment.tasks;
        let support = TaskConfig { enabled: false, ..task(&["user_profile:account_tier"]) };
        tasks.insert("customer_support".into(), support);
        let checkout = TaskConfig {
            freshness_threshold_seconds: 120,
            ..task(&["user_profile:account_tier", "product_catalog:price"])
        };
        tasks.insert("checkout_help".into(), checkout);
    })
    .await;
    register_catalog(&app).await;
    write_u1_p9(&app).await;

    let answer =
        enrich(&app, json!({"prompt": PROMPT, "task_type": "customer_support", "entities": {"user": "u1"}})).await;
    assert_eq!(answer["enriched_prompt"], json!(PROMPT));
    assert_eq!(answer["skipped_reason"], json!("task_not_enabled"));
    let body = json!({"prompt": PROMPT, "task_type": "checkout_help", "entities": {"user": "u1", "product": "p9"}});
    let answer = enrich(&app, body).await;
    assert_eq!(
        answer["enriched_prompt"],
        json!(format!("[Context]\n- account_tier: gold\n- price: 129.99\n[/Context]\n\n{PROMPT}"))
    );

    let (status, tasks) = app.get("/v1/enrich/tasks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tasks["tasks"]["customer_support"]["enabled"], json!(false));
    assert_eq!(
        tasks["tasks"]["checkout_help"]["features"][1],
        json!({"feature": "product_catalog:price", "entity": "product", "usable": true})
    );
    assert_eq!(tasks["tasks"]["code_generation"]["features"][0]["reason"], json!("not_registered"));

    for (body, needle) in [
        (json!({"task_type": "x"}), "missing field `prompt`"),
        (json!({"prompt": "p", "task_type": "x", "max_tokens": 5}), "unknown field `max_tokens`"),
        (json!({"prompt": "p", "task_type": "x", "max_feature_tokens": 0}), "max_feature_tokens must be from 1"),
        (json!({"prompt": "p", "task_type": "x", "timeout_ms": 0}), "timeout_ms must be from 1"),
        (json!({"prompt": "p", "task_type": "product_recommendation", "entities": {"user": 1.5}}), "entities.user"),
    ] {
        let (status, answer) = app.post_json("/v1/enrich", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, answer) = app.post_raw("/v1/enrich", "application/json", "{\"prompt\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], json!("invalid_json"));
}

/// The timeout path: Redis frozen (SIGSTOP) holds every online read. Each
/// request still answers within its timeout, untouched; after 5 in a row the
/// task is switched off and prompts pass through at once; once Redis is
/// back, the trial after 30 s switches it on again.
#[tokio::test]
async fn a_slow_store_leaves_the_prompt_untouched_within_the_timeout_and_switches_the_task_off() {
    let Some(redis) = PrivateRedis::start(spare_port()) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let app = TestApp::spawn_with(|c| c.online = Some(redis.url())).await;
    register_catalog(&app).await;
    write_u1_p9(&app).await;
    let answer = enrich(&app, recommendation(json!({}))).await;
    assert_eq!(answer["features_available"], json!(true), "{answer}");

    redis.pause();
    for i in 0..5 {
        let started = Instant::now();
        let answer = enrich(&app, recommendation(json!({"timeout_ms": 150}))).await;
        let took = started.elapsed();
        assert_eq!(answer["enriched_prompt"], json!(PROMPT), "request {i}: {answer}");
        assert_eq!(answer["features_available"], json!(false));
        assert_eq!(answer["skipped_reason"], json!("timeout"));
        let latency = answer["enrichment_latency_ms"].as_f64().unwrap();
        assert!(latency >= 150.0, "answered before its timeout: {latency} ms");
        // Redis's own response timeout is 5 s: an answer well before it
        // means the request's deadline cut the read off.
        assert!(took < Duration::from_millis(2_000), "request {i} took {took:?} against a 150 ms timeout");
    }
    let (status, stats) = app.get("/v1/enrich/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["store"]["available"], json!(false), "{stats}");
    assert_eq!(stats["store"]["consecutive_failures"], json!(5));
    let task = task_stats(&stats, "product_recommendation");
    assert_eq!(task["active"], json!(false), "{stats}");
    assert_eq!(task["disabled_reason"], json!("store_failing"));
    assert!(task["disabled_detail"].as_str().unwrap().contains("no answer within 150 ms"), "{task}");
    assert_eq!(task["enriched"], json!(1));
    assert_eq!(task["requests"], json!(6));

    // Switched off: no waiting on the store.
    let answer = enrich(&app, recommendation(json!({"timeout_ms": 150}))).await;
    assert_eq!(answer["skipped_reason"], json!("store_failing"));
    assert!(answer["enrichment_latency_ms"].as_f64().unwrap() < 150.0, "{answer}");
    // Other tasks are not switched off by this one's failures.
    let other =
        enrich(&app, json!({"prompt": "hi", "task_type": "customer_support", "entities": {"user": "u1"}})).await;
    assert_ne!(other["skipped_reason"], json!("store_failing"), "{other}");

    redis.resume();
    app.clock.advance_secs(30);
    let answer = enrich(&app, recommendation(json!({"timeout_ms": 2000}))).await;
    assert_eq!(answer["features_available"], json!(true), "the trial after 30 s: {answer}");
    let (_, stats) = app.get("/v1/enrich/stats").await;
    assert_eq!(task_stats(&stats, "product_recommendation")["active"], json!(true), "{stats}");
    assert_eq!(stats["store"]["available"], json!(true));
}

fn task_stats<'a>(stats: &'a Value, task: &str) -> &'a Value {
    stats["tasks"].as_array().unwrap().iter().find(|t| t["task_type"] == json!(task)).expect("task in stats")
}

async fn feedback(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post_json("/v1/enrich/feedback", &body).await
}

#[tokio::test]
async fn feedback_measures_the_quality_delta_and_switches_off_enrichment_that_does_not_help() {
    let app = TestApp::spawn_with(|config| {
        let monitor = &mut config.serving.enrichment.monitor;
        monitor.min_samples = 3;
        monitor.probe_every = 4;
        config.serving.enrichment.tasks.insert("support_reply".into(), task(&["user_profile:account_tier"]));
    })
    .await;
    register_catalog(&app).await;
    write_u1_p9(&app).await;

    // Recommendations help: 0.9, 0.8, 1.0 with features against a baseline
    // of 0.5, 0.6, 0.4 without. Delta = 0.9 - 0.5 = 0.4.
    for (with, without) in [(0.9, 0.5), (0.8, 0.6), (1.0, 0.4)] {
        let answer = enrich(&app, recommendation(json!({}))).await;
        let (status, ack) = feedback(&app, json!({"enrichment_id": answer["enrichment_id"], "quality": with})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack, json!({"task_type": "product_recommendation", "with_features": true}));
        let (status, ack) = feedback(&app, json!({"task_type": "product_recommendation", "quality": without})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["with_features"], json!(false));
    }
    // Support replies do not: 0.4 with features against 0.7 without (a
    // request that passed through counts as without).
    let mut last = Value::Null;
    for _ in 0..3 {
        let answer = enrich(
            &app,
            json!({"prompt": "Where is my order?", "task_type": "support_reply", "entities": {"user": "u1"}}),
        )
        .await;
        assert_eq!(answer["features_available"], json!(true), "{answer}");
        assert_eq!(
            feedback(&app, json!({"enrichment_id": answer["enrichment_id"], "quality": 0.4})).await.0,
            StatusCode::OK
        );
        last = answer;
    }
    for _ in 0..3 {
        let plain =
            enrich(&app, json!({"prompt": "Where is my order?", "task_type": "support_reply", "entities": {}})).await;
        assert_eq!(plain["skipped_reason"], json!("no_entities"));
        let (status, ack) = feedback(&app, json!({"enrichment_id": plain["enrichment_id"], "quality": 0.7})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ack["with_features"], json!(false));
    }

    let (status, stats) = app.get("/v1/enrich/stats").await;
    assert_eq!(status, StatusCode::OK);
    let rec = task_stats(&stats, "product_recommendation");
    assert!((rec["quality"]["with_features"]["mean"].as_f64().unwrap() - 0.9).abs() < 1e-9, "{rec}");
    assert!((rec["quality"]["without_features"]["mean"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{rec}");
    assert!((rec["quality"]["delta"].as_f64().unwrap() - 0.4).abs() < 1e-9, "{rec}");
    assert_eq!(rec["active"], json!(true));
    assert_eq!(rec["avg_features_used"], json!(7.0));
    let support = task_stats(&stats, "support_reply");
    assert!((support["quality"]["delta"].as_f64().unwrap() - -0.3).abs() < 1e-9, "{support}");
    assert_eq!(support["active"], json!(false), "{support}");
    assert_eq!(support["disabled_reason"], json!("no_quality_gain"));
    assert_eq!(support["requests"], json!(6));
    assert_eq!(support["enriched"], json!(3));
    // 3 recommendations and 6 support requests; 3 + 3 of them enriched,
    // with 7 and 1 features: (21 + 3) / 6 = 4 on average.
    assert_eq!(stats["total_enrichments"], json!(9));
    assert_eq!(stats["successful_enrichments"], json!(6));
    assert_eq!(stats["avg_features_used"], json!(4.0));
    assert!(stats["avg_latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));

    // Switched off: prompts pass through, except every 4th, still enriched
    // to keep measuring.
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let answer = enrich(
            &app,
            json!({"prompt": "Where is my order?", "task_type": "support_reply", "entities": {"user": "u1"}}),
        )
        .await;
        reasons.push(answer["skipped_reason"].clone());
    }
    assert_eq!(reasons, [json!("no_quality_gain"), json!("no_quality_gain"), json!("no_quality_gain"), Value::Null]);

    // Feedback errors.
    let id = last["enrichment_id"].clone();
    let (status, body) = feedback(&app, json!({"enrichment_id": id, "quality": 0.5})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = feedback(&app, json!({"enrichment_id": "enr_nope", "quality": 0.5})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("enr_nope"));
    let (status, body) = feedback(&app, json!({"task_type": "support_reply", "quality": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("from 0 to 1"));
}
