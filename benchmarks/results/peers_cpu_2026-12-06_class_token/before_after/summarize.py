"""Each file's speed over timm's file of the same round, from compare_latency.py's JSON: python summarize.py X.json..."""

import json
import statistics
import sys

for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    timm = next(row for row in results if "timm" in row["path"])
    print(path)
    for row in results:
        latency = statistics.median(
            peer / ours for ours, peer in zip(row["latency_ms_by_round"], timm["latency_ms_by_round"])
        )
        rate = statistics.median(
            ours / peer
            for ours, peer in zip(
                row["throughput_images_per_s_by_round"], timm["throughput_images_per_s_by_round"]
            )
        )
        name = row["path"].split("/")[-1]
        print(
            f"{name:>24s}  b1 {statistics.median(row['latency_ms_by_round']):7.3f} ms  x{latency:5.2f} timm   "
            f"b64 {statistics.median(row['throughput_images_per_s_by_round']):8.0f}/s  x{rate:5.2f} timm"
        )
