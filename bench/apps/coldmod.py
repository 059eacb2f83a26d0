"""The cold-start benchmark's handler module.

It imports a typical small stdlib set (json, email, http.client, decimal, uuid) and
registers one handler as 50 separate functions f0..f49, so the benchmark can always
invoke a function that has no worker: each call is a cold start (a zygote fork).

The fresh-interpreter peer imports this same module and calls `handler` directly.
"""

import decimal
import email
import email.charset
import http.client
import json
import uuid

from squall import App

app = App("coldbench")
FUNCTIONS = 50


def handler(event, ctx=None):
    amount = decimal.Decimal(str(event.get("amount", "0"))) if event else decimal.Decimal(0)
    return {
        "id": str(uuid.uuid4()),
        "total": str(amount * 2),
        "status": http.client.responses[http.client.OK],
        "charset": email.charset.Charset("utf-8").output_charset,
        "echo": json.loads(json.dumps(event)),
    }


for _i in range(FUNCTIONS):
    app.function(handler, name=f"f{_i}")
