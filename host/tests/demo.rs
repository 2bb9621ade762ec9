//! `wafer demo` as users run it: the real binary as a child process, read
//! over HTTP once per feature family, with one number of each stored family
//! checked against the demo's own generators.

use serde_json::{Value, json};
use wafer_host::demo;
use wafer_host::model::Timestamp;

mod support;

use support::{Server, send, start_demo, wafer};

async fn read(client: &reqwest::Client, server: &Server, request: Value) -> Value {
    send(client.post(server.url("/v1/features/online")).json(&request)).await
}

/// The features of the read's first entity, each asserted fresh and non-null.
fn fresh_features(body: &Value, expected: usize) -> serde_json::Map<String, Value> {
    let features = body["results"][0]["features"].as_object().expect("features").clone();
    assert_eq!(features.len(), expected, "{body}");
    for (name, v) in &features {
        assert_eq!(v["status"], json!("fresh"), "{name}: {v}");
        assert!(!v["value"].is_null(), "{name}: {v}");
    }
    features
}

fn value(features: &serde_json::Map<String, Value>, name: &str) -> f64 {
    features[name]["value"].as_f64().unwrap_or_else(|| panic!("{name} is not a number: {}", features[name]))
}

fn event_time(features: &serde_json::Map<String, Value>, name: &str) -> Timestamp {
    Timestamp::parse(features[name]["event_timestamp"].as_str().expect("event_timestamp")).expect("timestamp")
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: served {actual}, expected {expected}"
    );
}

/// The last close of `ticker` as the demo ingested it (the CSV's rounding).
fn last_close(ticker: &str, end: Timestamp) -> f64 {
    let csv = demo::prices_csv(ticker, demo::DEMO_DAYS, end);
    let last = csv.lines().last().expect("a bar");
    last.split(',').nth(5).expect("close column").parse().expect("close")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_every_seed_family_fresh_and_as_its_generators_say() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (server, ready_after) = start_demo(&tmp.path().join("data")).await;
    eprintln!("wafer demo served after {:.2} s", ready_after.as_secs_f64());
    let client = reqwest::Client::new();

    // technical: the 12 indicators; the last bar's time is the demo's `end`.
    let body = read(&client, &server, json!({"entities": [{"ticker": "AAPL"}], "feature_groups": ["technical"]})).await;
    let technical = fresh_features(&body, 12);
    let end = event_time(&technical, "technical:sma_20");
    for f in technical.values() {
        assert_eq!(f["source"], json!("online"), "materialized at start: {f}");
    }

    // risk, beta included: the stocks move with SPY, SPY is its own benchmark.
    let body = read(
        &client,
        &server,
        json!({"entities": [{"ticker": "AAPL"}, {"ticker": "SPY"}], "feature_groups": ["risk"], "fallback": "none"}),
    )
    .await;
    let risk = fresh_features(&body, 7);
    let beta = value(&risk, "risk:beta");
    assert!((0.5..1.5).contains(&beta), "AAPL's beta against SPY is {beta}");
    assert_eq!(event_time(&risk, "risk:beta"), end);
    let spy = &body["results"][1]["features"]["risk:beta"];
    assert_eq!(spy["value"], json!(1.0), "SPY against itself: {spy}");

    // Enrichment: the demo's market_briefing task puts AAPL's values, rounded
    // to 4 decimals, before the prompt, most important first, within the
    // budget: at 40 tokens (160 characters of block) the first six of eight.
    let briefing = send(client.post(server.url("/v1/enrich")).json(&json!({
        "prompt": "Should I add to my position?", "task_type": "market_briefing",
        "entities": {"ticker": "AAPL"}, "max_feature_tokens": 40})))
    .await;
    let prompt = briefing["enriched_prompt"].as_str().expect("enriched_prompt");
    let block = prompt.strip_suffix("Should I add to my position?").expect("the prompt comes last");
    let lines: Vec<&str> = block.lines().collect();
    assert_eq!((lines[0], lines[lines.len() - 2], lines[lines.len() - 1]), ("[Context]", "[/Context]", ""), "{prompt}");
    let rsi = value(&technical, "technical:rsi_14");
    assert_eq!(lines[1], format!("- rsi_14: {}", format!("{rsi:.4}").trim_end_matches('0')), "{prompt}");
    assert_eq!(lines[4], format!("- beta: {}", format!("{beta:.4}").trim_end_matches('0')), "{prompt}");
    assert!(block.chars().count().div_ceil(4) <= 40, "{prompt}");
    assert_eq!(briefing["feature_tokens_added"], json!(block.chars().count().div_ceil(4)));
    assert_eq!(
        briefing["features_used"],
        json!([
            "technical:rsi_14",
            "technical:macd_histogram",
            "risk:volatility_30d",
            "risk:beta",
            "risk:max_drawdown",
            "valuation:pe_ratio"
        ])
    );

    // Feast clients read the same values through the demo's ticker_overview
    // feature service, column-major, the join key first.
    let feast = send(client.post(server.url("/get-online-features")).json(&json!({
        "feature_service": "ticker_overview", "entities": {"ticker": ["AAPL"]}, "full_feature_names": true})))
    .await;
    assert_eq!(
        feast["metadata"]["feature_names"],
        json!(["ticker", "technical__rsi_14", "risk__beta", "valuation__pe_ratio"]),
        "{feast}"
    );
    assert_eq!(feast["results"][0]["values"], json!(["AAPL"]));
    assert_eq!(feast["results"][1]["values"][0].as_f64(), Some(rsi), "{feast}");
    assert_eq!(feast["results"][2]["values"][0].as_f64(), Some(beta), "{feast}");
    for column in &feast["results"].as_array().expect("results")[1..] {
        assert_eq!(column["statuses"], json!(["PRESENT"]), "{feast}");
        assert_eq!(column["event_timestamps"], json!([end.to_rfc3339()]), "{feast}");
    }

    // valuation: market_cap = last close x the latest published share count.
    let body = read(&client, &server, json!({"entities": [{"ticker": "AAPL"}], "feature_groups": ["valuation"]})).await;
    let valuation = fresh_features(&body, 5);
    let fundamentals = demo::fundamentals("AAPL", end);
    let latest = fundamentals.last().expect("AAPL has fundamentals");
    assert!(latest.ts < end, "published before the last price date");
    let close = last_close("AAPL", end);
    assert_close(value(&valuation, "valuation:market_cap"), close * latest.shares_outstanding, "market_cap");
    assert_close(value(&valuation, "valuation:pe_ratio"), close / latest.eps_ttm, "pe_ratio");
    // AMZN pays no dividend: a yield of 0, not null.
    let body =
        read(&client, &server, json!({"entities": [{"ticker": "AMZN"}], "features": ["valuation:dividend_yield"]}))
            .await;
    assert_eq!(fresh_features(&body, 1)["valuation:dividend_yield"]["value"], json!(0.0), "{body}");

    // signals: computed per read from the request's price and the stored SMAs.
    let price = close * 1.02;
    let body = read(
        &client,
        &server,
        json!({"entities": [{"ticker": "AAPL"}], "feature_groups": ["signals"], "request_context": {"price": price}}),
    )
    .await;
    let signals = fresh_features(&body, 3);
    let sma_20 = value(&technical, "technical:sma_20");
    let sma_50 = value(&technical, "technical:sma_50");
    assert_close(value(&signals, "signals:pct_from_sma_20"), (price - sma_20) / sma_20, "pct_from_sma_20");
    assert_close(value(&signals, "signals:pct_from_sma_50"), (price - sma_50) / sma_50, "pct_from_sma_50");
    assert_eq!(signals["signals:above_sma_50"]["value"], json!(price > sma_50), "{body}");

    // engagement: count_30d and sum_30d recomputed from the HCP's events, over
    // the window ending at its latest event (t - 30 d < s <= t).
    let hcp = demo::DEMO_HCPS[0];
    let body = read(&client, &server, json!({"entities": [{"hcp_id": hcp}], "feature_groups": ["engagement"]})).await;
    let engagement = fresh_features(&body, 5);
    let events = demo::engagement_events(hcp, end);
    let t = events.last().expect("events").ts;
    assert_eq!(event_time(&engagement, "engagement:count_30d"), t);
    let window: Vec<f64> = events.iter().filter(|e| e.ts > t.plus_secs(-30 * 86_400)).map(|e| e.minutes).collect();
    assert!(!window.is_empty());
    assert_eq!(value(&engagement, "engagement:count_30d"), window.len() as f64);
    assert_close(value(&engagement, "engagement:sum_30d"), window.iter().sum(), "sum_30d");

    // Freshness: every stored group, every entity fresh (SPY has no
    // fundamentals, so valuation has four).
    let freshness = send(client.get(server.url("/v1/freshness"))).await;
    let groups = freshness["groups"].as_array().expect("groups");
    for (group, entities) in [("technical", 5), ("risk", 5), ("valuation", 4), ("engagement", demo::DEMO_HCPS.len())] {
        let g = groups
            .iter()
            .find(|g| g["feature_group"] == json!(group))
            .unwrap_or_else(|| panic!("{group} missing from {freshness}"));
        assert_eq!(g["entities"], json!(entities), "{g}");
        assert_eq!(g["fresh"], json!(entities), "{g}");
    }

    // A ticker the demo does not have, ingested now and read without
    // materializing: risk (with SPY's series) and valuation (two sources)
    // are computed on the miss, to the same formulas (and written back).
    let csv = demo::prices_csv("NEWCO", demo::DEMO_DAYS, end);
    send(client.post(server.url("/v1/sources/prices/rows")).header("content-type", "text/csv").body(csv)).await;
    let csv = demo::fundamentals_csv("NEWCO", end);
    send(client.post(server.url("/v1/sources/fundamentals/rows")).header("content-type", "text/csv").body(csv)).await;
    let body = read(
        &client,
        &server,
        json!({"entities": [{"ticker": "NEWCO"}], "feature_groups": ["risk", "valuation"], "timeout_ms": 10_000}),
    )
    .await;
    let computed = fresh_features(&body, 12);
    assert!(computed.values().all(|v| v["source"] == json!("computed")), "{body}");
    let shares = demo::fundamentals("NEWCO", end).last().expect("fundamentals").shares_outstanding;
    assert_close(value(&computed, "valuation:market_cap"), last_close("NEWCO", end) * shares, "NEWCO market_cap");
    assert!((0.5..1.5).contains(&value(&computed, "risk:beta")), "{body}");

    // Training data: `wafer dataset` over the entity rows the demo wrote,
    // each row's values those of the bar it follows by an hour.
    let training = tmp.path().join("training.csv");
    let output = wafer()
        .args(["dataset", "--server", &server.base, "--features", "technical:sma_20,valuation:market_cap"])
        .arg("--entities")
        .arg(tmp.path().join("data/training_entities.csv"))
        .arg("--out")
        .arg(&training)
        .output()
        .expect("running wafer dataset");
    assert!(output.status.success(), "wafer dataset: {}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&training).expect("training.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ticker,event_timestamp,label,technical:sma_20,valuation:market_cap"));
    let mut rows = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (ticker, at) = (cells[0], Timestamp::parse(cells[1]).expect("event_timestamp"));
        let bars = demo::prices_csv(ticker, demo::DEMO_DAYS, end);
        let closes: Vec<(Timestamp, f64)> = bars
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                (Timestamp::parse(c[1]).unwrap(), c[5].parse().unwrap())
            })
            .collect();
        let i = closes.iter().position(|(ts, _)| ts.plus_secs(3600) == at).expect("an hour after a bar");
        let sma_20 = closes[i - 19..=i].iter().map(|(_, c)| c).sum::<f64>() / 20.0;
        assert_close(cells[3].parse().expect("sma_20"), sma_20, &format!("{ticker} sma_20 at {at}"));
        let published = demo::fundamentals(ticker, end).into_iter().rfind(|f| f.ts <= closes[i].0);
        let shares = published.expect("fundamentals published by then").shares_outstanding;
        assert_close(cells[4].parse().expect("market_cap"), closes[i].1 * shares, &format!("{ticker} market_cap"));
        assert!(cells[2] == "0" || cells[2] == "1", "the label passes through: {line}");
        rows += 1;
    }
    assert_eq!(rows, demo::training_entities_csv(end).lines().count() - 1);
    drop(server);
}
