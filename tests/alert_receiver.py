"""A webhook that records what Alertmanager posts to it (its webhook JSON), for the alerting
tests: a real HTTP server on the port of the ``alert_webhook_url`` setting."""

from __future__ import annotations

import email
import email.message
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class AlertReceiver:
    def __init__(self, url: str):
        self.notifications: list[dict] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        address = urlparse(url)
        self.server = ThreadingHTTPServer((address.hostname, address.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AlertReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def firing(self, **labels: str) -> list[dict]:
        """Every firing alert delivered so far whose labels include ``labels`` (one entry per
        delivery: a repeated notification counts again)."""
        return [
            alert
            for note in self.notifications
            for alert in note["alerts"]
            if alert["status"] == "firing"
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def wait_for(self, timeout: float = 90, **labels: str) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not (found := self.firing(**labels)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no alert {labels} within {timeout:.0f}s: {self.notifications}")
            time.sleep(0.5)
        return found


class MailReceiver:
    """An SMTP server (aiosmtpd) on the ``alert_smtp`` setting's host:port that keeps every
    message Alertmanager mails."""

    def __init__(self, smarthost: str):
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.Message] = []
        received = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's)
                received.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        host, port = smarthost.rsplit(":", 1)
        self.controller = Controller(Handler(), hostname=host, port=int(port))

    def __enter__(self) -> MailReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @staticmethod
    def body(message: email.message.Message) -> str:
        parts = message.walk() if message.is_multipart() else [message]
        return "".join(
            p.get_payload(decode=True).decode(errors="replace")
            for p in parts
            if not p.is_multipart()
        )

    def about(self, text: str, timeout: float = 30) -> list[email.message.Message]:
        """The messages whose subject or body mentions ``text`` (waiting for a first one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if text in str(m["Subject"]) + self.body(m)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)
