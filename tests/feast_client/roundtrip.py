"""Feast's own Python SDK against a wafer server: a feature repo whose
online store is `type: remote` at wafer's URL writes rows through
`FeatureStore.write_to_online_store` and reads them back through
`FeatureStore.get_online_features`, as any Feast user would.

Usage: python roundtrip.py SERVER_URL WORK_DIR

The server must have entity `driver` (join key `driver_id`) and group
`driver_hourly_stats` (conv_rate, acc_rate: float64; avg_daily_trips:
int64). Prints one JSON object: what was written and what was read.
"""

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64
from feast.value_type import ValueType

server, work = sys.argv[1], Path(sys.argv[2])
(work / "data").mkdir(parents=True, exist_ok=True)
(work / "feature_store.yaml").write_text(
    f"""project: wafer_roundtrip
registry: {work / "data" / "registry.db"}
provider: local
online_store:
  type: remote
  path: {server}
entity_key_serialization_version: 3
"""
)

now = datetime.now(timezone.utc).replace(microsecond=0)
rows = pd.DataFrame(
    {
        "driver_id": [1001, 1002, 1003],
        "conv_rate": [0.25, 0.5, 0.75],
        "acc_rate": [0.9, 0.8, 0.7],
        "avg_daily_trips": [10, 20, 30],
        "event_timestamp": [now - timedelta(minutes=5)] * 3,
        "created": [now] * 3,
    }
)
source_path = work / "data" / "driver_stats.parquet"
rows.to_parquet(source_path)

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float64),
        Field(name="acc_rate", dtype=Float64),
        Field(name="avg_daily_trips", dtype=Int64),
    ],
    source=FileSource(
        path=str(source_path), timestamp_field="event_timestamp", created_timestamp_column="created"
    ),
    online=True,
)
store = FeatureStore(repo_path=str(work))
store.apply([driver, stats])

store.write_to_online_store("driver_hourly_stats", rows)
# An older row for 1001 must not replace the newer one.
older = rows.iloc[[0]].copy()
older["conv_rate"] = [0.01]
older["event_timestamp"] = [now - timedelta(hours=2)]
store.write_to_online_store("driver_hourly_stats", older)

features = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
]
read = store.get_online_features(
    features=features,
    entity_rows=[{"driver_id": 1001}, {"driver_id": 1002}, {"driver_id": 1003}, {"driver_id": 4242}],
).to_dict()
full = store.get_online_features(
    features=features[:1], entity_rows=[{"driver_id": 1002}], full_feature_names=True
).to_dict()
print(json.dumps({"read": read, "full": full, "event_timestamp": (now - timedelta(minutes=5)).isoformat()}))
