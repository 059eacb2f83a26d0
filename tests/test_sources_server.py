"""The outside-world sources wired into a real supervisor (`squall run`): an MQTT
message, an email and a webhook, each run by a forked worker; least privilege enforced
there too."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import threading
import uuid
from email.message import EmailMessage
from pathlib import Path

import httpx

import pytest
from mqtt_fixtures import mqtt_url as reachable_mqtt_url
from mqtt_fixtures import publish
from servers import RunningServer

APP = str(Path(__file__).parent / "apps" / "sources_app.py")


@pytest.fixture
def mqtt_url() -> str:
    return reachable_mqtt_url()


def test_squall_run_receives_mqtt_email_and_webhooks(tmp_path, monkeypatch, mqtt_url):
    prefix = f"squall-test/{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SOURCES_PREFIX", prefix)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    with RunningServer(APP, str(tmp_path), mqtt_url=mqtt_url, smtp_port=0) as server:
        sup = server.sup
        results: dict[str, object] = {}
        all_done = threading.Event()
        record = sup.runtime.on_result

        def on_result(result, kind):  # await the three invocations, no polling
            record(result, kind)
            results.setdefault(result.function, result)
            if {"on_reading", "on_mail", "on_hook"} <= set(results):
                all_done.set()

        sup.runtime.on_result = on_result
        server.run(asyncio.wait_for(sup.ingress.mqtt.connected.wait(), 10))
        server.run(publish(mqtt_url, [(f"{prefix}/lab/temperature", b"23.5")]))

        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@b.c", "support@example.com", "hello"
        msg.set_content("see attached")
        msg.add_attachment(b"report body", maintype="text", subtype="plain",
                           filename="report.txt")
        with smtplib.SMTP("127.0.0.1", sup.ingress.smtp.port, timeout=10) as s:
            s.send_message(msg)

        body = b'{"event": "ping"}'
        sig = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        bad = httpx.post(server.url + "/hooks/in", content=body,
                         headers={"X-Signature-256": "0" * 64})
        assert bad.status_code == 401 and bad.json()["code"] == "invalid_signature"
        good = httpx.post(server.url + "/hooks/in", content=body,
                          headers={"X-Signature-256": sig})
        assert good.status_code == 202, good.text
        assert all_done.wait(30), sorted(results)

    assert results["on_reading"].ok and results["on_reading"].output == "23.5"
    assert results["on_mail"].output == ["hello", "report body"]
    hook = results["on_hook"].output
    assert hook["body"] == '{"event": "ping"}'
    assert "function 'on_hook' may not send queue 'private'" in hook["denied"]
