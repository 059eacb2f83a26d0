"""A sensor simulator: publishes temperature/humidity readings over MQTT, as devices in a
building would. Deterministic for a seed; every `spike_every`-th reading of a sensor is
a spike (for the anomaly detector to find).

    python examples/iot/iot_simulator.py --url mqtt://127.0.0.1:1883 --count 120 --interval 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from urllib.parse import urlsplit

import aiomqtt

SENSORS = {"s1": 21.0, "s2": 19.5, "s3": 23.0}  # sensor id -> its normal temperature


def readings(count: int, *, prefix: str = "squall-iot", start: float | None = None,
             seed: int = 0, spike_every: int = 0, step_s: float = 5.0
             ) -> list[tuple[str, bytes]]:
    """`count` readings per sensor, `step_s` seconds apart: (topic, JSON payload)."""
    rand = random.Random(seed)
    t0 = time.time() if start is None else start
    out = []
    for i in range(count):
        for sensor, base in SENSORS.items():
            temp = base + 0.8 * math.sin(i / 12) + rand.gauss(0, 0.15)
            if spike_every and i and i % spike_every == 0:
                temp += 15.0
            payload = {"sensor": sensor, "temperature": round(temp, 2),
                       "humidity": round(45 + rand.gauss(0, 2), 1), "ts": t0 + i * step_s}
            out.append((f"{prefix}/{sensor}/readings", json.dumps(payload).encode()))
    return out


async def publish(url: str, messages: list[tuple[str, bytes]], *, interval_s: float = 0.0,
                  qos: int = 1) -> None:
    target = urlsplit(url)
    async with aiomqtt.Client(target.hostname or "127.0.0.1", target.port or 1883) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)
            if interval_s:
                await asyncio.sleep(interval_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--prefix", default="squall-iot", help="topic prefix (IOT_TOPIC_PREFIX)")
    parser.add_argument("--count", type=int, default=120, help="readings per sensor")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between messages")
    parser.add_argument("--spike-every", type=int, default=40)
    args = parser.parse_args()
    messages = readings(args.count, prefix=args.prefix, spike_every=args.spike_every)
    asyncio.run(publish(args.url, messages, interval_s=args.interval))
    print(f"published {len(messages)} readings to {args.url}")


if __name__ == "__main__":
    main()
