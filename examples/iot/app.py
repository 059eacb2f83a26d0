"""An IoT pipeline: MQTT -> validate and enrich -> ordered stream -> windowed averages and
trends, anomaly detection, and an archive in object storage; a live page shows it all.

    sensors --MQTT--> ingest ---------> stream "readings" (ordered per sensor)
                      validates,           |-> aggregate: 1-minute windows per sensor
                      enriches             |   (average, min, max, trend) and anomalies
                      (bad: "rejected")    |-> archive: JSON lines into the "archive"
                                               bucket; raw/ goes cold after 7 days and
                                               is deleted after 90 (a lifecycle policy)
    GET /live      a page that polls GET /api/live every 2 seconds

The MQTT subscription makes every message durable before it is acknowledged, so a crash
loses no reading; the stream keeps each sensor's readings in order, so the per-sensor
windows and baselines are updated by one batch at a time.

Run it (Mosquitto on 127.0.0.1:1883, or set SQUALL_MQTT_URL):

    squall dev examples/iot
    python examples/iot/iot_simulator.py --count 120     # in another terminal
    open http://localhost:8080/live

IOT_TOPIC_PREFIX (default "squall-iot") is the topic prefix: SENSORS publish to
PREFIX/<sensor>/readings.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from datetime import datetime, timezone

from squall import App, Response

app = App("iot")
PREFIX = os.environ.get("IOT_TOPIC_PREFIX", "squall-iot")
windows = app.table("windows", key="sensor", sort_key="start")
baselines = app.table("baselines", key="sensor")
latest = app.table("latest", key="sensor")
anomalies = app.table("anomalies", key="sensor", sort_key="ts")
rejected = app.table("rejected", key="topic", sort_key="received_at")
archive = app.bucket("archive", lifecycle=[
    {"prefix": "raw/", "archive_after_days": 7, "expire_after_days": 90}])

# where each sensor is: the enrichment
SENSORS = {"s1": {"site": "lab", "floor": 1}, "s2": {"site": "lab", "floor": 2},
           "s3": {"site": "office", "floor": 1}}
LIMITS = {"temperature": (-40.0, 85.0), "humidity": (0.0, 100.0)}  # what the sensor can read
WINDOW_S = 60
TREND_EPSILON = 0.2   # degrees between windows that count as a change
ANOMALY_SIGMA = 4.0   # this many standard deviations from the baseline is an outlier
WARMUP = 10           # readings before the baseline is trusted


class InvalidReading(ValueError):
    pass


def validate(topic: str, payload: str) -> dict:
    try:
        reading = json.loads(payload)
    except ValueError:
        raise InvalidReading("the payload is not JSON") from None
    if not isinstance(reading, dict):
        raise InvalidReading("the payload must be a JSON object")
    sensor = reading.get("sensor")
    if sensor not in SENSORS:
        raise InvalidReading(f"unknown sensor {sensor!r}")
    if topic.split("/")[-2] != sensor:
        raise InvalidReading(f"sensor {sensor!r} published on another sensor's topic")
    for field, (low, high) in LIMITS.items():
        value = reading.get(field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not low <= value <= high:
            raise InvalidReading(f"{field} must be a number from {low} to {high}, got {value!r}")
    if not isinstance(reading.get("ts"), (int, float)):
        raise InvalidReading("ts must be the reading's time in epoch seconds")
    return {"sensor": sensor, "temperature": float(reading["temperature"]),
            "humidity": float(reading["humidity"]), "ts": float(reading["ts"])}


@app.on_mqtt(f"{PREFIX}/+/readings", qos=1)
def ingest(event, ctx):
    """Validate and enrich one reading, then append it to the ordered stream. A bad one is
    kept with its reason (visible on the live page), not retried: it will not get better."""
    try:
        reading = validate(event["topic"], event["payload"])
    except InvalidReading as exc:
        rejected.put({"topic": event["topic"], "received_at": event["received_at"],
                      "payload": event["payload"][:500], "reason": str(exc)})
        return {"rejected": str(exc)}
    enriched = {**reading, **SENSORS[reading["sensor"]], "received_at": event["received_at"]}
    app.put_record("readings", enriched, partition_key=reading["sensor"])
    return {"accepted": reading["sensor"]}


@app.stream("readings", batch_size=200)
def aggregate(records, ctx):
    """Per sensor, in order: anomalies against a running baseline (Welford), then the
    1-minute windows (count, sum, min, max; average and trend derived)."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for record in records:
        r = record.data
        _detect(r)
        groups[(r["sensor"], int(r["ts"] // WINDOW_S) * WINDOW_S)].append(r["temperature"])
        latest.put({"sensor": r["sensor"], "temperature": r["temperature"],
                    "humidity": r["humidity"], "ts": r["ts"], "site": r["site"]})
    for (sensor, start), temps in groups.items():
        current = windows.get((sensor, start)) or {}
        count = current.get("count", 0) + len(temps)
        total = current.get("sum", 0.0) + sum(temps)
        previous = windows.get((sensor, start - WINDOW_S))
        average = total / count
        trend = "new"
        if previous is not None:
            delta = average - previous["average"]
            trend = ("rising" if delta > TREND_EPSILON else
                     "falling" if delta < -TREND_EPSILON else "steady")
        windows.put({"sensor": sensor, "start": start, "count": count, "sum": total,
                     "average": round(average, 3), "trend": trend,
                     "min": min([*temps, current.get("min", math.inf)]),
                     "max": max([*temps, current.get("max", -math.inf)])})


def _detect(r: dict) -> None:
    base = baselines.get(r["sensor"]) or {"n": 0, "mean": 0.0, "m2": 0.0}
    n, mean, m2 = base["n"], base["mean"], base["m2"]
    std = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
    if n >= WARMUP and abs(r["temperature"] - mean) > ANOMALY_SIGMA * max(std, 0.25):
        anomalies.put({"sensor": r["sensor"], "ts": r["ts"], "temperature": r["temperature"],
                       "expected": round(mean, 2), "sigma": round(std, 3), "site": r["site"]})
        app.publish("iot", "AnomalyDetected", {"sensor": r["sensor"], "ts": r["ts"],
                                               "temperature": r["temperature"]})
        return  # an outlier does not move the baseline
    n += 1
    delta = r["temperature"] - mean
    mean += delta / n
    m2 += delta * (r["temperature"] - mean)
    baselines.put({"sensor": r["sensor"], "n": n, "mean": mean, "m2": m2})


@app.stream("readings", batch_size=500)
def archiver(records, ctx):
    """One JSON-lines object per batch. The key is the batch's first sequence number, so a
    retried batch overwrites its own object instead of adding a duplicate."""
    first = records[0]
    day = datetime.fromtimestamp(first.data["ts"], timezone.utc).strftime("%Y-%m-%d")
    key = f"raw/{day}/shard-{first.shard}/{first.sequence.replace(':', '-')}.jsonl"
    archive.put(key, "".join(r.body + "\n" for r in records),
                content_type="application/x-ndjson")


@app.http("GET", "/api/live")
def live_data(request):
    recent = sorted(anomalies.scan_all(), key=lambda a: a["ts"], reverse=True)[:20]
    per_sensor = {}
    for sensor in SENSORS:
        page = windows.query(sensor, reverse=True, limit=5)
        per_sensor[sensor] = [{k: w[k] for k in ("start", "count", "average", "min", "max",
                                                 "trend")} for w in page.items]
    return {"now": time.time(), "latest": [dict(i) for i in latest.scan_all()],
            "windows": per_sensor, "anomalies": [dict(a) for a in recent],
            "rejected": [{"topic": r["topic"], "reason": r["reason"]}
                         for r in rejected.scan(limit=20).items]}


@app.http("GET", "/live")
def live_page(request):
    return Response(200, PAGE, content_type="text/html; charset=utf-8")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Squall IoT: live</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}
td,th{padding:.2rem .8rem;border-bottom:1px solid #ddd;text-align:left}
.anomaly{color:#b00}</style></head>
<body><h1>Sensors, live</h1>
<h2>Latest readings</h2><table id="latest"></table>
<h2>1-minute windows</h2><table id="windows"></table>
<h2>Anomalies</h2><table id="anomalies" class="anomaly"></table>
<h2>Rejected messages</h2><table id="rejected"></table>
<script>
const esc = v => String(v).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
const row = (cells, tag = "td") =>
  "<tr>" + cells.map(c => `<${tag}>${esc(c)}</${tag}>`).join("") + "</tr>";
const time = ts => new Date(ts * 1000).toLocaleTimeString();
function fill(id, head, rows) {
  document.getElementById(id).innerHTML = row(head, "th") + rows.map(r => row(r)).join("");
}
async function poll() {
  try {
    const d = await (await fetch("api/live")).json();
    fill("latest", ["sensor", "site", "°C", "% RH", "at"],
         d.latest.map(r => [r.sensor, r.site, r.temperature, r.humidity, time(r.ts)]));
    fill("windows", ["sensor", "window", "readings", "average", "min", "max", "trend"],
         Object.entries(d.windows).flatMap(([s, ws]) => ws.map(w =>
           [s, time(w.start), w.count, w.average, w.min, w.max, w.trend])));
    fill("anomalies", ["sensor", "at", "°C", "expected"],
         d.anomalies.map(a => [a.sensor, time(a.ts), a.temperature, a.expected]));
    fill("rejected", ["topic", "reason"], d.rejected.map(r => [r.topic, r.reason]));
  } finally { setTimeout(poll, 2000); }
}
poll();
</script></body></html>
"""
