"""An AWS Lambda handler written for API Gateway (HTTP API, payload 2.0); Squall runs it
unchanged."""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)

STOCK = {"tea": {"north": 40, "south": 12}, "mug": {"north": 5, "south": 0}}


def lambda_handler(event, context):
    logger.info("legacy %s %s", event["requestContext"]["http"]["method"], event["rawPath"])
    parts = event["pathParameters"]["proxy"].split("/")
    if len(parts) != 2 or parts[0] != "stock":
        return {"statusCode": 404, "body": json.dumps({"message": "no such resource"})}
    sku = parts[1]
    warehouse = (event.get("queryStringParameters") or {}).get("warehouse")
    levels = STOCK.get(sku, {})
    body = {"sku": sku, "stock": levels.get(warehouse) if warehouse else levels,
            "requestId": context.aws_request_id,
            "remainingMs": context.get_remaining_time_in_millis()}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "cookies": ["last_sku=" + sku],
        "body": json.dumps(body),
    }
