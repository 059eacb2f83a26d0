"""Inbound email: mail sent with smtplib to the app's SMTP server (aiosmtpd on loopback)
is parsed, its attachments stored in a bucket, made durable, then delivered; rejected
mail gets clear SMTP codes."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from squall import App, ConfigError
from squall.testing import TestClient

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def make_app() -> App:
    app = App("mailapp")
    app.bucket("mail", lifecycle=[{"prefix": "", "expire_after_days": 30}])

    @app.on_email(to="support@example.com", bucket="mail")
    def support(mail, ctx):
        print("support", mail["subject"], mail["from"], mail["text"].strip(),
              [(a["filename"], a["size"], a["key"]) for a in mail["attachments"]])
        return mail

    @app.on_email(to=["*@orders.example.com", "orders+*@example.com"])
    def orders(mail, ctx):
        print("orders", mail["recipients"])

    return app


@pytest.fixture
def client():
    with TestClient(make_app()) as c:
        c.ingress = c.start_sources(smtp_port=0, smtp_max_bytes=64 * 1024)
        yield c


def smtp(client) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", client.ingress.smtp.port, timeout=10)


def test_an_email_with_an_attachment(client):
    msg = EmailMessage()
    msg["From"] = "Ada <ada@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Broken widget"
    msg.set_content("It broke.\n")
    msg.add_alternative("<p>It <b>broke</b>.</p>", subtype="html")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="../../photo 1.png")
    # When the server answers 250, the message is durable (not yet delivered)
    with smtp(client) as s:
        refused = s.send_message(msg)
    assert refused == {}
    assert client.invocations("support") == []
    assert client.queue_stats("_async.support").visible == 1
    client.drain()
    (result,) = client.invocations("support")
    mail = result.output
    assert mail["subject"] == "Broken widget" and mail["from"] == "Ada <ada@example.org>"
    assert mail["to"] == ["support@example.com"] and mail["recipients"] == [
        "support@example.com"]
    assert mail["text"] == "It broke.\n" and "<b>broke</b>" in mail["html"]
    assert mail["mail_from"] == "ada@example.org"
    assert ["Subject", "Broken widget"] in mail["headers"]
    (att,) = mail["attachments"]
    assert att["filename"] == "../../photo 1.png" and att["content_type"] == "image/png"
    assert att["bucket"] == "mail" and att["size"] == len(PNG)
    assert att["key"].endswith("/1-photo_1.png") and ".." not in att["key"]  # a safe key
    # Then the attachment is an ordinary object in the bucket, as is the raw message
    bucket = client.app.buckets["mail"]
    assert bucket.get(att["key"]).body == PNG
    assert bucket.get(mail["raw"]["key"]).body.startswith(b"From: Ada <ada@example.org>")
    assert b"Broken widget" in bucket.get(mail["raw"]["key"]).body


def test_patterns_and_the_default_bucket(client):
    with smtp(client) as s:
        s.sendmail("a@b.c", ["eu@orders.example.com", "orders+42@example.com"],
                   b"Subject: two\r\n\r\nhello\r\n")
    client.drain()
    assert "orders ['eu@orders.example.com', 'orders+42@example.com']" in client.logs("orders")
    assert "email" in client.app.buckets  # declared by on_email


def test_an_unknown_recipient_is_refused_with_550(client):
    with smtp(client) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            s.sendmail("a@b.c", ["nobody@example.com"], b"Subject: x\r\n\r\nx\r\n")
    code, reply = exc.value.recipients["nobody@example.com"]
    assert code == 550 and b"no such recipient" in reply
    # one good recipient among bad ones: delivered to the good one only
    with smtp(client) as s:
        refused = s.sendmail("a@b.c", ["nobody@example.com", "support@example.com"],
                             b"Subject: x\r\n\r\nx\r\n")
    assert refused["nobody@example.com"][0] == 550
    assert client.drain().succeeded == 1


def test_mail_over_the_size_limit_is_refused_with_552(client):
    big = b"Subject: big\r\n\r\n" + b"x" * 70 * 1024 + b"\r\n"
    with smtp(client) as s:
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as exc:
            s.sendmail("a@b.c", ["support@example.com"], big)
    assert exc.value.smtp_code == 552
    assert client.queue_stats("_async.support").visible == 0


def test_malformed_mail_is_refused_with_554(client):
    with smtp(client) as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail("a@b.c", ["support@example.com"], b"\r\n\r\n")
    assert exc.value.smtp_code == 554 and b"could not be parsed" in exc.value.smtp_error
    assert client.queue_stats("_async.support").visible == 0


def test_when_storage_fails_the_sender_is_told_to_retry(client):
    # Given a broker that cannot take the event, When mail arrives, Then 451 (not 250)
    broker = client.ingress.smtp.broker

    async def down(batches):
        raise OSError("disk full")

    original, broker.send_many = broker.send_many, down
    try:
        with smtp(client) as s:
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail("a@b.c", ["support@example.com"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        broker.send_many = original
    assert exc.value.smtp_code == 451


def test_email_declarations_are_checked():
    app = App("badmail")
    with pytest.raises(ConfigError, match="function 'f': to 'support' is not an address"):
        app.on_email(to="support", name="f")(lambda mail, ctx: None)
