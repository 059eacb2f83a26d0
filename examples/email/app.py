"""An email service with queue-based load levelling.

A marketing burst of 10,000 send requests arrives in one HTTP call. Sending them at once
would open 10,000 SMTP connections and get the service throttled or blocked by the mail
server. Instead the front door only *absorbs* the burst: it validates every message and
puts them all on the durable `outbox` queue in one write (202 Accepted, in milliseconds).
The `deliver` function drains the queue at a fixed pace: at most `concurrency` batches
at once, each batch one SMTP connection. The queue is the shock absorber; nothing is
lost if the mail server is slow or the process restarts (at-least-once, retried,
dead-lettered after `max_receive` attempts).

    POST /emails        one message            {"to", "subject", "body"}
    POST /emails/bulk   up to 10,000 messages  {"messages": [{...}, ...]}
    GET  /emails/{id}   status: queued -> sent | rejected

Exactly once to the mail server, as far as a sender can: each message has an id (the
`Message-ID` header, and the queue's dedup key); `deliver` records sent ids and skips a
redelivered message that was already sent.

Run it with an SMTP sink:

    python -m aiosmtpd -n -l 127.0.0.1:8025 &
    squall dev examples/email
    curl -s -XPOST localhost:8080/emails -d '{"to": "ada@example.com", "subject": "Hi", "body": "Hello"}'
    squall send examples/email outbox --data '{"id": "m1", "to": "bob@example.com", "subject": "Hi", "body": "Hello"}'

SMTP_HOST / SMTP_PORT (default 127.0.0.1:8025) say where the mail goes; EMAIL_MAX_BULK
(default 10000) caps one bulk request.
"""

from __future__ import annotations

import logging
import os
import smtplib
import uuid
from email.message import EmailMessage
from email.utils import make_msgid

from squall import App, BadRequest, BatchResult, NotFound, Response

app = App("email")
sent = app.table("sent", key="id")
log = logging.getLogger("email")
log.setLevel(logging.INFO)

CONCURRENCY = 4   # SMTP connections at most: what the mail server allows us
BATCH_SIZE = 50   # messages per connection
MAX_SUBJECT = 998  # RFC 5322 line length
MAX_BODY = 256 * 1024


def _max_bulk() -> int:
    return int(os.environ.get("EMAIL_MAX_BULK", "10000"))


def validate(message: object, where: str = "the message") -> dict:
    if not isinstance(message, dict):
        raise BadRequest(f"{where} must be a JSON object with to, subject and body")
    to, subject, body = message.get("to"), message.get("subject"), message.get("body")
    if not isinstance(to, str) or to.count("@") != 1 or any(c in to for c in " \r\n,;"):
        raise BadRequest(f"{where}: 'to' must be one email address, got {to!r}")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT or \
            "\n" in subject or "\r" in subject:
        raise BadRequest(f"{where}: 'subject' must be one line of 1 to {MAX_SUBJECT} characters")
    if not isinstance(body, str) or len(body) > MAX_BODY:
        raise BadRequest(f"{where}: 'body' must be text of at most {MAX_BODY} characters")
    return {"id": message.get("id") or uuid.uuid4().hex, "to": to, "subject": subject,
            "body": body}


def enqueue(messages: list[dict]) -> list[str]:
    """One durable write for the whole burst; the ids double as dedup keys, so a client
    that retries its request does not queue the same message twice."""
    ids = [m["id"] for m in messages]
    app.send_batch("outbox", messages, dedup_keys=ids)
    return ids


@app.http("POST", "/emails")
def send_one(request):
    (mid,) = enqueue([validate(request.json())])
    return Response(202, {"id": mid, "status": "queued"}, headers={"location": f"/emails/{mid}"})


@app.http("POST", "/emails/bulk", timeout_s=30, memory_mb=256)  # 10,000 checks + one write
def send_bulk(request):
    payload = request.json()
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not messages:
        raise BadRequest("send {\"messages\": [{\"to\", \"subject\", \"body\"}, ...]}")
    if len(messages) > _max_bulk():
        raise BadRequest(f"{len(messages)} messages in one request; the limit is "
                         f"{_max_bulk()} (EMAIL_MAX_BULK): split the burst")
    checked = [validate(m, f"message {i}") for i, m in enumerate(messages)]
    return Response(202, {"accepted": len(enqueue(checked))})


@app.http("GET", "/emails/{message_id}")
def status(request):
    record = sent.get(request.path_params["message_id"])
    if record is None:  # not sent (yet): it may still be waiting in the queue
        raise NotFound(f"message {request.path_params['message_id']!r} has not been sent")
    return dict(record)


@app.queue("outbox", batch_size=BATCH_SIZE, concurrency=CONCURRENCY, max_receive=5,
           timeout_s=60)
def deliver(batch, ctx):
    """One SMTP connection per batch. A message the server refuses for good is recorded
    as rejected; one that fails for now is retried alone (partial batch failure)."""
    failed = []
    host, port = os.environ.get("SMTP_HOST", "127.0.0.1"), int(os.environ.get("SMTP_PORT", "8025"))
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        for message in batch:
            m = message.data
            if sent.get(m["id"]) is not None:
                continue  # redelivered after it was sent: once is enough
            try:
                smtp.send_message(_mime(m))
            except smtplib.SMTPRecipientsRefused as exc:
                sent.put({"id": m["id"], "to": m["to"], "status": "rejected",
                          "reason": str(exc.recipients)})
                continue
            except (smtplib.SMTPException, OSError) as exc:
                log.warning("message %s to %s: %s (will retry)", m["id"], m["to"], exc)
                failed.append(message.id)
                continue
            sent.put({"id": m["id"], "to": m["to"], "status": "sent"})
    return BatchResult(failed=failed)


def _mime(m: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "news@example.com", m["to"], m["subject"]
    msg["Message-ID"] = make_msgid(idstring=m["id"], domain="squall.example")
    msg.set_content(m["body"])
    return msg
