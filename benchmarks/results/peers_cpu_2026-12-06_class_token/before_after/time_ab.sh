#!/bin/bash
# Times each shape's files in interleaved rounds; ratios against timm's file computed per round.
F=/work/scratch/ab/files
OUTD=${OUTD:-/work/scratch/ab/timing}
mkdir -p $OUTD
cd /work/main
for s in ${SHAPES:-w64 w192}; do
  python benchmarks/compare_latency.py $F/${s}_main_ort.onnx $F/${s}_timm.onnx $F/${s}_main.onnx $F/${s}_base_ort.onnx $F/${s}_base.onnx $F/${s}_main_fp32.tflite $F/${s}_base_fp32.tflite --rounds ${ROUNDS:-7} --batch 64 --output $OUTD/${s}.json > $OUTD/${s}.log 2>&1
  python - $OUTD/${s}.json <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
res = r["results"]; t = [x for x in res if "timm" in x["path"]][0]
for row in res:
    lat = statistics.median(p / o for o, p in zip(row["latency_ms_by_round"], t["latency_ms_by_round"]))
    thr = statistics.median(o / p for o, p in zip(row["throughput_images_per_s_by_round"], t["throughput_images_per_s_by_round"]))
    print(f"{row["path"].split("/")[-1]:>28s}  b1 {statistics.median(row['latency_ms_by_round']):7.3f} ms  x{lat:5.2f} timm   b64 {statistics.median(row['throughput_images_per_s_by_round']):8.0f}/s  x{thr:5.2f} timm")
PY
done
