"""Stream records as handlers see them (native, and Kinesis's Lambda event)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .envelope import Event


@dataclass(frozen=True, slots=True)
class StreamRecord:
    sequence: str  # "<shard>:<seq>", ordered within its shard
    shard: int
    partition_key: str
    body: str
    arrival: float

    @property
    def data(self) -> Any:
        return json.loads(self.body)

    def cloudevent(self, stream: str) -> Event:
        """This record as a CloudEvents 1.0 event (partition key as `partitionkey`)."""
        return Event(id=self.sequence, source=f"/squall/streams/{stream}",
                     type="squall.stream.record",
                     time=datetime.fromtimestamp(self.arrival, timezone.utc), data=self.data,
                     extensions={"partitionkey": self.partition_key})


def native_records(payload: dict[str, Any]) -> list[StreamRecord]:
    return [StreamRecord(r["sequence"], r["shard"], r["partition_key"], r["data"], r["arrival"])
            for r in payload["records"]]


def kinesis_event(payload: dict[str, Any], *, region: str = "local",
                  account: str = "000000000000") -> dict[str, Any]:
    arn = f"arn:aws:kinesis:{region}:{account}:stream/{payload['stream']}"
    out = []
    for r in payload["records"]:
        seq = r["sequence"]
        out.append({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["partition_key"],
                "sequenceNumber": seq,
                "data": base64.b64encode(r["data"].encode()).decode(),
                "approximateArrivalTimestamp": r["arrival"],
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"shardId-{r['shard']:012d}:{seq}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": f"arn:aws:iam::{account}:role/squall",
            "awsRegion": region,
            "eventSourceARN": arn,
        })
    return {"Records": out}
