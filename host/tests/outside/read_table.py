"""Reads one wafer feature table with delta-rs's Python package (not wafer)
and prints its rows as JSON lines: what an outside engine sees.

usage: read_table.py TABLE_DIR
"""
import json
import sys

from deltalake import DeltaTable

table = DeltaTable(sys.argv[1]).to_pyarrow_table()
for row in table.to_pylist():
    row["event_timestamp"] = row["event_timestamp"].isoformat().replace("+00:00", "Z")
    row.pop("created_timestamp")
    row.pop("event_month")
    print(json.dumps(row, sort_keys=True))
