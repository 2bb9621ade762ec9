//! The Feast feature-server surface: Feast's JSON in and out, wafer's
//! freshness as Feast's field statuses, writes that never let an older row
//! win, and errors in the shape the Feast client turns back into its typed
//! exceptions. Every test runs on both backend pairs, except the outage
//! test, which runs its own PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafer_host::model::Timestamp;
use wafer_tests::harness::whole_second;
use wafer_tests::pg::PrivatePostgres;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    online_features_come_back_column_major_with_join_keys_first_and_features_in_request_order,
    full_feature_names_prefix_the_view_and_bare_names_must_not_collide,
    integer_and_string_keys_name_the_same_entity_and_are_echoed_as_sent,
    statuses_follow_freshness_and_expired_values_are_still_returned,
    a_feature_service_is_a_configured_list_or_a_whole_feature_group,
    request_fields_for_on_demand_groups_come_inside_entities,
    push_and_write_accept_feast_timestamps_and_an_older_row_never_replaces_a_newer_one,
    a_push_to_offline_keeps_history_and_leaves_online_serving_alone,
    client_errors_are_4xx_feast_error_details_with_feasts_classes,
    health_answers_200_while_the_registry_answers,
    the_documented_feast_request_gets_the_documented_answer,
    the_openapi_examples_are_one_real_exchange,
);

/// Feast's freshness in wafer's terms for most tests: fresh for an hour,
/// expired after two (kept online for four).
fn hourly() -> Value {
    json!({"expected_interval_seconds": 3600, "max_age_seconds": 7200})
}

async fn put(app: &TestApp, path: &str, body: Value) {
    let (status, answer) = app.put_json(path, &body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
}

/// Entity `driver` and push group `driver_hourly_stats` (the view of
/// Feast's `local` template), plus `driver_daily`, which shares a feature
/// name with it.
async fn register_drivers(app: &TestApp, freshness: Value) {
    put(app, "/v1/entities/driver", json!({"join_keys": ["driver_id"]})).await;
    put(
        app,
        "/v1/feature-groups/driver_hourly_stats",
        json!({
        "entity": "driver", "freshness": freshness, "producer": {"kind": "push"},
        "features": [{"name": "conv_rate", "type": "float64"}, {"name": "acc_rate", "type": "float64"},
                     {"name": "avg_daily_trips", "type": "int64"}]}),
    )
    .await;
    put(
        app,
        "/v1/feature-groups/driver_daily",
        json!({
        "entity": "driver", "freshness": freshness, "producer": {"kind": "push"},
        "features": [{"name": "conv_rate", "type": "float64"}, {"name": "trips_today", "type": "int64"}]}),
    )
    .await;
}

/// A whole second `secs` from the clock's now.
fn at(app: &TestApp, secs: i64) -> Timestamp {
    whole_second(wafer_host::clock::Clock::now(&app.clock)).plus_secs(secs)
}

/// `t` as the remote online store client sends it: naive UTC `isoformat()`.
fn naive(t: Timestamp) -> String {
    t.to_rfc3339().trim_end_matches('Z').to_string()
}

#[track_caller]
fn assert_ok(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
}

async fn write(app: &TestApp, view: &str, df: Value) {
    let (status, body) = app
        .post_json(
            "/write-to-online-store",
            &json!({"feature_view_name": view, "df": df, "allow_registry_cache": false}),
        )
        .await;
    assert_ok(status, &body, &format!("write-to-online-store {view}"));
    assert_eq!(body, Value::Null, "Feast answers a write with null");
}

async fn push(app: &TestApp, source: &str, df: Value) {
    let (status, body) = app.post_json("/push", &json!({"push_source_name": source, "df": df})).await;
    assert_ok(status, &body, &format!("push {source}"));
}

async fn read(app: &TestApp, request: Value) -> Value {
    let (status, body) = app.post_json("/get-online-features", &request).await;
    assert_ok(status, &body, &format!("get-online-features {request}"));
    body
}

fn names(body: &Value) -> Vec<&str> {
    body["metadata"]["feature_names"].as_array().expect("feature_names").iter().map(|n| n.as_str().unwrap()).collect()
}

/// The column named `name`: (values, statuses, event_timestamps).
#[track_caller]
fn column<'a>(body: &'a Value, name: &str) -> (&'a Value, &'a Value, &'a Value) {
    let i = names(body).iter().position(|n| *n == name).unwrap_or_else(|| panic!("no column {name}: {body}"));
    let r = &body["results"][i];
    (&r["values"], &r["statuses"], &r["event_timestamps"])
}

/// The class and message of a Feast error answer, checking its shape: a
/// JSON string (served as JSON) holding `{"module", "class", "message"}`.
#[track_caller]
fn feast_error(status: StatusCode, body: &Value, want: StatusCode) -> (String, String) {
    assert_eq!(status, want, "{body}");
    let text = body.as_str().unwrap_or_else(|| panic!("the body must be a JSON string: {body}"));
    let detail: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("the string must hold JSON ({e}): {text}"));
    assert_eq!(detail["module"], json!("feast.errors"), "{detail}");
    assert_eq!(detail.as_object().unwrap().len(), 3, "module, class and message only: {detail}");
    (detail["class"].as_str().expect("class").to_string(), detail["message"].as_str().expect("message").to_string())
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

async fn online_features_come_back_column_major_with_join_keys_first_and_features_in_request_order(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let t = at(&app, -60);
    write(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": [1001, 1002], "conv_rate": [0.25, 0.5],
        "acc_rate": [0.75, 0.875], "avg_daily_trips": [10, 20], "event_timestamp": [naive(t), naive(t)]}),
    )
    .await;
    write(&app, "driver_daily", json!({"driver_id": [1001, 1002], "trips_today": [3, 4], "event_timestamp": naive(t)}))
        .await;

    let body = read(
        &app,
        json!({"features": ["driver_daily:trips_today", "driver_hourly_stats:avg_daily_trips",
        "driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1002, 1001, 1003]}}),
    )
    .await;
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["metadata", "results"], "{body}");
    assert_eq!(names(&body), vec!["driver_id", "trips_today", "avg_daily_trips", "conv_rate"]);
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "one result per column: {body}");
    for r in results {
        assert_eq!(r.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["values", "statuses", "event_timestamps"]);
        for list in ["values", "statuses", "event_timestamps"] {
            assert_eq!(r[list].as_array().map(Vec::len), Some(3), "one entry per row: {r}");
        }
    }
    let written = json!(t.to_rfc3339());
    let found = json!(["PRESENT", "PRESENT", "NOT_FOUND"]);
    assert_eq!(
        column(&body, "driver_id"),
        (&json!([1002, 1001, 1003]), &json!(vec!["PRESENT"; 3]), &json!(vec![EPOCH; 3]))
    );
    let when = json!([written, written, EPOCH]);
    assert_eq!(column(&body, "trips_today"), (&json!([4, 3, null]), &found, &when));
    assert_eq!(column(&body, "avg_daily_trips"), (&json!([20, 10, null]), &found, &when));
    assert_eq!(column(&body, "conv_rate"), (&json!([0.5, 0.25, null]), &found, &when));
}

async fn full_feature_names_prefix_the_view_and_bare_names_must_not_collide(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let t = naive(at(&app, -60));
    write(&app, "driver_hourly_stats", json!({"driver_id": [1001], "conv_rate": [0.25], "event_timestamp": [t]})).await;
    write(&app, "driver_daily", json!({"driver_id": [1001], "conv_rate": [0.75], "event_timestamp": [t]})).await;
    let features = json!(["driver_hourly_stats:conv_rate", "driver_daily:conv_rate"]);

    let body =
        read(&app, json!({"features": features, "entities": {"driver_id": [1001]}, "full_feature_names": true})).await;
    assert_eq!(names(&body), vec!["driver_id", "driver_hourly_stats__conv_rate", "driver_daily__conv_rate"]);
    assert_eq!(column(&body, "driver_hourly_stats__conv_rate").0, &json!([0.25]));
    assert_eq!(column(&body, "driver_daily__conv_rate").0, &json!([0.75]));

    let (status, body) =
        app.post_json("/get-online-features", &json!({"features": features, "entities": {"driver_id": [1001]}})).await;
    let (class, message) = feast_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(class, "FeatureNameCollisionError");
    assert!(message.contains("conv_rate") && message.contains("full_feature_names"), "{message}");
}

async fn integer_and_string_keys_name_the_same_entity_and_are_echoed_as_sent(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let t = naive(at(&app, -60));
    // 1001 written as a string, 1002 as an integer.
    push(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": ["1001", 1002], "conv_rate": [0.25, 0.5], "event_timestamp": [t, t]}),
    )
    .await;
    let body = read(
        &app,
        json!({"features": ["driver_hourly_stats:conv_rate"],
        "entities": {"driver_id": [1001, "1001", 1002, "1002"]}}),
    )
    .await;
    assert_eq!(column(&body, "driver_id").0, &json!([1001, "1001", 1002, "1002"]));
    assert_eq!(column(&body, "conv_rate").0, &json!([0.25, 0.25, 0.5, 0.5]));
    assert_eq!(column(&body, "conv_rate").1, &json!(vec!["PRESENT"; 4]));
}

async fn statuses_follow_freshness_and_expired_values_are_still_returned(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let t0 = at(&app, 0);
    // 1002's conv_rate is null: a row without that value.
    write(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": [1001, 1002], "conv_rate": [0.25, null],
        "acc_rate": [0.75, 0.5], "event_timestamp": [naive(t0), naive(t0)]}),
    )
    .await;
    let request = json!({"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate"],
                         "entities": {"driver_id": [1001, 1002, 1003]}});
    let written = t0.to_rfc3339();
    assert!(written.ends_with('Z'), "{written}");

    // Fresh (30 min), then stale (1 h 23 min): both PRESENT.
    for age in [1800, 5000] {
        app.clock.set(t0.plus_secs(age));
        let body = read(&app, request.clone()).await;
        assert_eq!(
            column(&body, "conv_rate"),
            (
                &json!([0.25, null, null]),
                &json!(["PRESENT", "NOT_FOUND", "NOT_FOUND"]),
                &json!([written, EPOCH, EPOCH])
            ),
            "at age {age}: {body}"
        );
        assert_eq!(
            column(&body, "acc_rate"),
            (&json!([0.75, 0.5, null]), &json!(["PRESENT", "PRESENT", "NOT_FOUND"]), &json!([written, written, EPOCH])),
            "at age {age}: {body}"
        );
        assert_eq!(column(&body, "driver_id").2, &json!(vec![EPOCH; 3]));
    }

    // Past max age (2 h), still held online: the value with OUTSIDE_MAX_AGE.
    app.clock.set(t0.plus_secs(7300));
    let body = read(&app, request).await;
    assert_eq!(
        column(&body, "acc_rate"),
        (
            &json!([0.75, 0.5, null]),
            &json!(["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]),
            &json!([written, written, EPOCH])
        ),
        "{body}"
    );
    assert_eq!(column(&body, "conv_rate").1, &json!(["OUTSIDE_MAX_AGE", "NOT_FOUND", "NOT_FOUND"]), "{body}");
}

async fn a_feature_service_is_a_configured_list_or_a_whole_feature_group(backend: Backend) {
    let app = TestApp::spawn_on(backend, |config| {
        let refs = vec!["driver_daily:trips_today".to_string(), "driver_hourly_stats:conv_rate".to_string()];
        config.serving.feature_services.insert("driver_activity_v1".to_string(), refs);
    })
    .await;
    register_drivers(&app, hourly()).await;
    let t = naive(at(&app, -60));
    write(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": [1001], "conv_rate": [0.25], "acc_rate": [0.75],
        "avg_daily_trips": [10], "event_timestamp": [t]}),
    )
    .await;
    write(&app, "driver_daily", json!({"driver_id": [1001], "trips_today": [3], "event_timestamp": [t]})).await;
    let entities = json!({"driver_id": [1001]});

    // The configured list, in its order; it takes precedence over features.
    let body = read(
        &app,
        json!({"feature_service": "driver_activity_v1", "entities": entities,
        "features": ["driver_hourly_stats:acc_rate"]}),
    )
    .await;
    assert_eq!(names(&body), vec!["driver_id", "trips_today", "conv_rate"]);
    assert_eq!((column(&body, "trips_today").0, column(&body, "conv_rate").0), (&json!([3]), &json!([0.25])));

    // A group's name: all its features, in the group's order.
    let body =
        read(&app, json!({"feature_service": "driver_hourly_stats", "entities": entities, "full_feature_names": true}))
            .await;
    assert_eq!(
        names(&body),
        vec![
            "driver_id",
            "driver_hourly_stats__conv_rate",
            "driver_hourly_stats__acc_rate",
            "driver_hourly_stats__avg_daily_trips"
        ]
    );
    assert_eq!(column(&body, "driver_hourly_stats__avg_daily_trips").0, &json!([10]));

    let (status, body) = app
        .post_json("/get-online-features", &json!({"feature_service": "driver_activity_v9", "entities": entities}))
        .await;
    let (class, message) = feast_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(class, "FeatureServiceNotFoundException");
    assert!(message.contains("driver_activity_v9") && message.contains("driver_activity_v1"), "{message}");
}

async fn request_fields_for_on_demand_groups_come_inside_entities(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_and_activate("signals", "1.0.0", wafer_host::bundled::SIGNALS).await;
    put(&app, "/v1/entities/ticker", json!({"join_keys": ["ticker"]})).await;
    put(
        &app,
        "/v1/feature-groups/technical",
        json!({"entity": "ticker", "producer": {"kind": "push"},
        "features": [{"name": "sma_20", "type": "float64"}, {"name": "sma_50", "type": "float64"}]}),
    )
    .await;
    put(
        &app,
        "/v1/feature-groups/signals",
        json!({"entity": "ticker",
        "features": [{"name": "pct_from_sma_20", "type": "float64"}, {"name": "above_sma_50", "type": "bool"}],
        "producer": {"kind": "on_demand", "transform": "signals", "inputs": ["technical:sma_20", "technical:sma_50"],
                     "request_fields": [{"name": "price", "type": "float64"}]}}),
    )
    .await;
    let (sma_20, sma_50) = ([100.0, 200.0], [110.0, 190.0]);
    push(
        &app,
        "technical",
        json!({"ticker": ["AAPL", "MSFT"], "sma_20": sma_20, "sma_50": sma_50,
        "event_timestamp": vec![naive(at(&app, -60)); 2]}),
    )
    .await;

    let prices = [105.0, 195.0];
    let features = json!(["signals:pct_from_sma_20", "signals:above_sma_50", "technical:sma_50"]);
    let body =
        read(&app, json!({"features": features, "entities": {"ticker": ["AAPL", "MSFT"], "price": prices}})).await;
    assert_eq!(names(&body), vec!["ticker", "pct_from_sma_20", "above_sma_50", "sma_50"], "request data is not echoed");
    let pct: Vec<f64> = (0..2).map(|i| (prices[i] - sma_20[i]) / sma_20[i]).collect();
    let above: Vec<bool> = (0..2).map(|i| prices[i] > sma_50[i]).collect();
    assert_eq!(column(&body, "pct_from_sma_20").0, &json!(pct));
    assert_eq!(column(&body, "above_sma_50").0, &json!(above));
    assert_eq!(column(&body, "above_sma_50").1, &json!(["PRESENT", "PRESENT"]));
    assert_eq!(column(&body, "sma_50").0, &json!(sma_50));

    let (status, body) = app
        .post_json("/get-online-features", &json!({"features": features, "entities": {"ticker": ["AAPL", "MSFT"]}}))
        .await;
    let (class, message) = feast_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(class, "RequestDataNotFoundInEntityRowsException");
    assert!(message.contains("price") && message.contains("signals"), "{message}");
}

/// `driver_hourly_stats:conv_rate` of 1001 and its event time.
async fn served(app: &TestApp) -> (Value, Value) {
    let body =
        read(app, json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}})).await;
    let (values, statuses, times) = column(&body, "conv_rate");
    assert_eq!(statuses, &json!(["PRESENT"]), "{body}");
    (values[0].clone(), times[0].clone())
}

/// 1001's conv_rate as of `t`, from the offline store (training data).
async fn offline_as_of(app: &TestApp, t: Timestamp) -> Value {
    let request = json!({"entity_rows": [{"driver_id": 1001, "event_timestamp": t.to_rfc3339()}],
                         "features": ["driver_hourly_stats:conv_rate"]});
    let (status, body) = app.post_json("/v1/features/historical", &request).await;
    assert_ok(status, &body, "historical");
    body["rows"][0]["driver_hourly_stats:conv_rate"].clone()
}

async fn push_and_write_accept_feast_timestamps_and_an_older_row_never_replaces_a_newer_one(backend: Backend) {
    let mut app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let (t00, t0, t1, t2) = (at(&app, -900), at(&app, -600), at(&app, -120), at(&app, -60));

    // Python's str(datetime), naive: UTC.
    let space = t1.to_rfc3339().replace('T', " ").replace('Z', "");
    push(&app, "driver_hourly_stats", json!({"driver_id": [1001], "conv_rate": [0.1], "event_timestamp": [space]}))
        .await;
    assert_eq!(served(&app).await, (json!(0.1), json!(t1.to_rfc3339())));

    // An offset is converted to UTC.
    let plus_two = (t2.to_datetime() + chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M:%S+02:00").to_string();
    write(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": [1001], "conv_rate": [0.2], "event_timestamp": [plus_two],
        "created": [null]}),
    )
    .await;
    assert_eq!(served(&app).await, (json!(0.2), json!(t2.to_rfc3339())));

    // An older event, pushed and written after the newer one, is kept
    // offline but never served over it.
    push(&app, "driver_hourly_stats", json!({"driver_id": [1001], "conv_rate": [0.3], "event_timestamp": [naive(t0)]}))
        .await;
    write(
        &app,
        "driver_hourly_stats",
        json!({"driver_id": [1001], "conv_rate": [0.35], "event_timestamp": [naive(t00)]}),
    )
    .await;
    assert_eq!(served(&app).await, (json!(0.2), json!(t2.to_rfc3339())));

    // The same event again is a correction: the latest `created` wins,
    // whatever order the writes come in.
    let now = at(&app, 0);
    for (created, value) in [(now.plus_secs(10), 0.4), (now.plus_secs(5), 0.5)] {
        push(
            &app,
            "driver_hourly_stats",
            json!({"driver_id": [1001], "conv_rate": [value],
            "event_timestamp": [naive(t2)], "created": [naive(created)]}),
        )
        .await;
    }
    assert_eq!(served(&app).await, (json!(0.4), json!(t2.to_rfc3339())));

    // Offline keeps the history (training data) and survives a restart.
    assert_eq!(offline_as_of(&app, t1).await, json!(0.1));
    assert_eq!(offline_as_of(&app, t0).await, json!(0.3));
    assert_eq!(offline_as_of(&app, t00).await, json!(0.35));
    app.restart().await;
    assert_eq!(served(&app).await, (json!(0.4), json!(t2.to_rfc3339())));
}

async fn a_push_to_offline_keeps_history_and_leaves_online_serving_alone(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let (t1, t2) = (at(&app, -120), at(&app, -60));
    push(&app, "driver_hourly_stats", json!({"driver_id": [1001], "conv_rate": [0.1], "event_timestamp": [naive(t1)]}))
        .await;
    let (status, body) = app
        .post_json(
            "/push",
            &json!({"push_source_name": "driver_hourly_stats", "to": "offline",
        "df": {"driver_id": [1001], "conv_rate": [0.2], "event_timestamp": [naive(t2)]}}),
        )
        .await;
    assert_ok(status, &body, "push to offline");
    assert_eq!(served(&app).await, (json!(0.1), json!(t1.to_rfc3339())), "online serving is unchanged");
    assert_eq!(offline_as_of(&app, t2).await, json!(0.2), "the row is history offline");

    let (status, body) = app
        .post_json(
            "/push",
            &json!({"push_source_name": "driver_hourly_stats", "to": "nowhere",
        "df": {"driver_id": [1001], "conv_rate": [0.2], "event_timestamp": [naive(t2)]}}),
        )
        .await;
    let (class, message) = feast_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(class, "FeastError");
    assert!(message.contains("online_and_offline"), "the message lists the modes: {message}");
}

async fn client_errors_are_4xx_feast_error_details_with_feasts_classes(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_drivers(&app, hourly()).await;
    let t = naive(at(&app, -60));
    let entities = json!({"driver_id": [1001]});
    let reading = |features: Value| json!({"features": features, "entities": entities});
    let df = json!({"driver_id": [1001], "conv_rate": [0.5], "event_timestamp": [t]});
    let cases = [
        (
            "an unknown view",
            "/get-online-features",
            reading(json!(["driver_stats:conv_rate"])),
            StatusCode::NOT_FOUND,
            "FeatureViewNotFoundException",
            "driver_stats",
        ),
        (
            "an unknown feature",
            "/get-online-features",
            reading(json!(["driver_hourly_stats:conversion"])),
            StatusCode::NOT_FOUND,
            "SpecifiedFeaturesNotPresentError",
            "conversion",
        ),
        (
            "an unknown feature service",
            "/get-online-features",
            json!({"feature_service": "nope", "entities": entities}),
            StatusCode::NOT_FOUND,
            "FeatureServiceNotFoundException",
            "nope",
        ),
        (
            "no join key",
            "/get-online-features",
            json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver": [1001]}}),
            StatusCode::BAD_REQUEST,
            "FeastEntityDFMissingColumnsError",
            "driver_id",
        ),
        (
            "columns of different lengths",
            "/get-online-features",
            json!({"features": ["driver_daily:trips_today"], "entities": {"driver_id": [1001, 1002], "x": [1]}}),
            StatusCode::BAD_REQUEST,
            "FeastError",
            "same length",
        ),
        (
            "an unknown push source",
            "/push",
            json!({"push_source_name": "driver_stats_push_source", "df": df}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "PushSourceNotFoundException",
            "driver_stats_push_source",
        ),
        (
            "an unknown view to write",
            "/write-to-online-store",
            json!({"feature_view_name": "driver_stats", "df": df}),
            StatusCode::NOT_FOUND,
            "FeatureViewNotFoundException",
            "driver_stats",
        ),
        (
            "an unknown df column",
            "/push",
            json!({"push_source_name": "driver_hourly_stats", "df": {"driver_id": [1001], "conversion": [0.5], "event_timestamp": [t]}}),
            StatusCode::NOT_FOUND,
            "SpecifiedFeaturesNotPresentError",
            "conversion",
        ),
        (
            "no event_timestamp",
            "/write-to-online-store",
            json!({"feature_view_name": "driver_hourly_stats", "df": {"driver_id": [1001], "conv_rate": [0.5]}}),
            StatusCode::BAD_REQUEST,
            "FeastEntityDFMissingColumnsError",
            "event_timestamp",
        ),
        (
            "a value of the wrong type",
            "/push",
            json!({"push_source_name": "driver_hourly_stats", "df": {"driver_id": [1001], "conv_rate": ["high"], "event_timestamp": [t]}}),
            StatusCode::BAD_REQUEST,
            "FeastError",
            "conv_rate",
        ),
        (
            "a body without entities",
            "/get-online-features",
            json!({"features": ["driver_hourly_stats:conv_rate"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "FeastError",
            "entities",
        ),
    ];
    for (what, path, body, want, want_class, named) in cases {
        let (status, answer) = app.post_json(path, &body).await;
        let (class, message) = feast_error(status, &answer, want);
        assert_eq!(class, want_class, "{what}: {message}");
        assert!(message.contains(named), "{what}: the message should name {named}: {message}");
    }

    // Malformed JSON: where it broke. Served as JSON.
    let resp = app
        .client
        .post(app.url("/get-online-features"))
        .header("content-type", "application/json")
        .body("{\"features\": [")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON body");
    let (class, message) = feast_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(class, "FeastError");
    assert!(message.contains("line 1"), "{message}");
    // A form (curl -d without a content type) is refused, as by Feast's server.
    let (status, body) = app.post_raw("/push", "application/x-www-form-urlencoded", df.to_string()).await;
    assert_eq!(feast_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE).0, "FeastError");
    // Nothing above was written.
    let body = read(&app, json!({"features": ["driver_hourly_stats:conv_rate"], "entities": entities})).await;
    assert_eq!(column(&body, "conv_rate").1, &json!(["NOT_FOUND"]), "{body}");
}

async fn health_answers_200_while_the_registry_answers(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
}

/// The request of Feast's python feature server page, byte for byte
/// (feast-dev/feast `docs/reference/feature-servers/python-feature-server.md`,
/// "Retrieving features"; https://docs.feast.dev/reference/feature-servers/python-feature-server).
const DOCUMENTED_REQUEST: &str = r#"{
    "features": [
      "driver_hourly_stats:conv_rate",
      "driver_hourly_stats:acc_rate",
      "driver_hourly_stats:avg_daily_trips"
    ],
    "entities": {
      "driver_id": [1001, 1002, 1003]
    }
  }"#;

/// The answer that page documents for it, verbatim.
const DOCUMENTED_RESPONSE: &str = r#"{
  "metadata": {
    "feature_names": [
      "driver_id",
      "conv_rate",
      "avg_daily_trips",
      "acc_rate"
    ]
  },
  "results": [
    {
      "values": [
        1001,
        0.7037263512611389,
        308,
        0.8724706768989563
      ],
      "statuses": [
        "PRESENT",
        "PRESENT",
        "PRESENT",
        "PRESENT"
      ],
      "event_timestamps": [
        "1970-01-01T00:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z"
      ]
    },
    {
      "values": [
        1002,
        0.038169607520103455,
        332,
        0.48534533381462097
      ],
      "statuses": [
        "PRESENT",
        "PRESENT",
        "PRESENT",
        "PRESENT"
      ],
      "event_timestamps": [
        "1970-01-01T00:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z"
      ]
    },
    {
      "values": [
        1003,
        0.9665873050689697,
        779,
        0.7793770432472229
      ],
      "statuses": [
        "PRESENT",
        "PRESENT",
        "PRESENT",
        "PRESENT"
      ],
      "event_timestamps": [
        "1970-01-01T00:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z",
        "2021-12-31T23:00:00Z"
      ]
    }
  ]
}"#;

/// `driver_hourly_stats` with the `ttl` of Feast's template (one day), read
/// an hour after the documented event time.
async fn register_documented_catalog(app: &TestApp) {
    register_drivers(app, json!({"max_age_seconds": 86_400})).await;
    app.clock.set(Timestamp::parse("2022-01-01T00:00:00Z").unwrap());
}

async fn the_documented_feast_request_gets_the_documented_answer(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_documented_catalog(&app).await;
    let documented: Value = serde_json::from_str(DOCUMENTED_RESPONSE).unwrap();
    let doc_names: Vec<&str> = names(&documented);
    // The page shows one result per entity row: it predates Feast's
    // columnar answer. Feast's server now answers one result per column
    // (its own integration test zips feature_names with results,
    // sdk/python/tests/integration/online_store/test_universal_online.py),
    // so the documented rows are compared as columns.
    let rows = documented["results"].as_array().unwrap();
    let doc_column = |j: usize| {
        let field = |list: &str| Value::Array(rows.iter().map(|r| r[list][j].clone()).collect());
        (field("values"), field("statuses"), field("event_timestamps"))
    };

    // Written as Feast's remote online store writes them (online_write_batch):
    // naive UTC isoformat() event times, created null.
    let mut df = serde_json::Map::new();
    for (j, name) in doc_names.iter().enumerate() {
        df.insert(name.to_string(), doc_column(j).0);
    }
    let times: Vec<Value> = (0..rows.len())
        .map(|i| json!(rows[i]["event_timestamps"][1].as_str().unwrap().trim_end_matches('Z')))
        .collect();
    df.insert("event_timestamp".into(), Value::Array(times));
    df.insert("created".into(), json!(vec![Value::Null; rows.len()]));
    write(&app, "driver_hourly_stats", Value::Object(df)).await;

    // Sent as the page's Python example sends it: the bytes, no content type.
    let resp = app.client.post(app.url("/get-online-features")).body(DOCUMENTED_REQUEST).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.expect("a JSON answer");

    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answer), keys(&documented), "{answer}");
    assert_eq!(keys(&answer["metadata"]), keys(&documented["metadata"]));
    let got_names = names(&answer);
    assert_eq!(got_names[0], doc_names[0], "the join key comes first");
    let mut sorted = (got_names.clone(), doc_names.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "the same columns");
    // The page's feature order comes from a Python set (Feast's
    // _group_feature_refs); wafer answers in request order.
    assert_eq!(got_names[1..], ["conv_rate", "acc_rate", "avg_daily_trips"]);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), got_names.len());
    for (j, name) in doc_names.iter().enumerate() {
        let (values, statuses, times) = doc_column(j);
        assert_eq!(keys(&results[got_names.iter().position(|n| n == name).unwrap()]), keys(&rows[0]));
        // Equal JSON: the same numbers with the same types (308, not 308.0).
        assert_eq!(column(&answer, name), (&values, &statuses, &times), "{name}");
    }
}

async fn the_openapi_examples_are_one_real_exchange(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_documented_catalog(&app).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_ok(status, &doc, "openapi.json");
    let op = |path: &str| doc["paths"][path]["post"].clone();
    let request = |path: &str| op(path)["requestBody"]["content"]["application/json"]["example"].clone();
    let response = |path: &str| op(path)["responses"]["200"]["content"]["application/json"]["example"].clone();
    for path in ["/write-to-online-store", "/push", "/get-online-features"] {
        let (status, body) = app.post_json(path, &request(path)).await;
        assert_ok(status, &body, path);
        assert_eq!(body, response(path), "{path}");
    }
}

/// Store faults are 503 (Feast clients retry 5xx) in Feast's shape; reads
/// of what the online store holds keep working.
#[tokio::test]
async fn feast_writes_and_health_answer_503_while_the_database_is_down() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let app = TestApp::spawn_with(|c| {
        c.database_url = Some(pg.url());
        c.database_schema = None;
    })
    .await;
    register_drivers(&app, hourly()).await;
    let df = |v: f64| json!({"driver_id": [1001], "conv_rate": [v], "event_timestamp": [naive(at(&app, -60))]});
    push(&app, "driver_hourly_stats", df(0.1)).await;

    pg.stop_immediate();
    let (status, body) =
        app.post_json("/push", &json!({"push_source_name": "driver_hourly_stats", "df": df(0.2)})).await;
    let (class, message) = feast_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(class, "FeastError");
    assert!(message.contains("retry"), "{message}");
    let (status, body) = app.get("/health").await;
    assert_eq!(feast_error(status, &body, StatusCode::SERVICE_UNAVAILABLE).0, "FeastError");
    assert_eq!(served(&app).await.0, json!(0.1), "the online store still answers");

    pg.start_again();
    let mut last = (StatusCode::SERVICE_UNAVAILABLE, Value::Null);
    for _ in 0..100 {
        last = app.post_json("/push", &json!({"push_source_name": "driver_hourly_stats", "df": df(0.3)})).await;
        if last.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ok(last.0, &last.1, "a push once the database is back");
    assert_eq!(served(&app).await.0, json!(0.3));
}
