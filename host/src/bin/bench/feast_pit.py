"""Feast's side of `wafer-bench pit`: the same point-in-time request on
Feast's DuckDB offline store, over the same Parquet files.

Run by the bench (`--feast-python PATH`, a Python with `feast[duckdb]`
0.67.0) with the path of the spec it wrote: the files' directory, the
groups (keys, features, max age) and the number of rounds. Each round is
timed as wafer's request is: the entity rows read from CSV, the
point-in-time join (`get_historical_features(...).to_df()`), the answer
written as CSV. The first round also loads the registry (cold); later
rounds reuse the store object (warm). The last answer is left in
`feast.csv` for the bench to compare with wafer's.
"""

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    files = Path(spec["dir"])
    repo = files / "feast"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: wafer_bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    entities = {key: Entity(name=key, join_keys=[key], value_type=ValueType.STRING) for key in ("ticker", "venue")}
    views = []
    for group in spec["groups"]:
        source = FileSource(
            name=f"{group['name']}_source",
            path=str(files / f"{group['name']}.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )
        days = group["max_age_days"]
        views.append(
            FeatureView(
                name=group["name"],
                entities=[entities[k] for k in group["keys"]],
                ttl=timedelta(days=days) if days is not None else timedelta(0),
                schema=[Field(name=f, dtype=Float64) for f in group["features"]],
                source=source,
            )
        )
    store.apply([*entities.values(), *views])
    refs = [f"{g['name']}:{f}" for g in spec["groups"] for f in g["features"]]

    out = files / "feast.csv"
    for round_ in range(spec["rounds"]):
        label = "cold" if round_ == 0 else f"warm {round_}"
        if round_ == 0:
            # A fresh store object, as a new process would have.
            store = FeatureStore(repo_path=str(repo))
        t = time.perf_counter()
        entity_df = pd.read_csv(files / "entity_rows.csv", dtype={"ticker": str, "venue": str})
        entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
        answer = store.get_historical_features(entity_df=entity_df, features=refs, full_feature_names=True).to_df()
        answer.to_csv(out, index=False)
        secs = time.perf_counter() - t
        print(
            f"Feast DuckDB {label}: {len(entity_df)} entity rows x {len(refs)} features, CSV in and out, "
            f"in {secs:.3f} s ({len(entity_df) / secs:.0f} rows/s)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1])
