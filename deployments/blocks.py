"""The Prefect blocks this project adds: e-mail over plain SMTP as a notification block.

Prefect ships Slack, Teams, PagerDuty and generic webhook notification blocks, and SendGrid for
e-mail, but nothing for an organisation's own SMTP relay. ``TicketsEmail`` fills that gap. The
Prefect server itself calls ``notify`` when an automation fires, so it must be able to import this
class: ``pyproject.toml`` registers this module under the ``prefect.collections`` entry point,
which every Prefect process (server, worker) loads. Keep it light: Prefect and the standard
library only.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

import anyio
from prefect.blocks.abstract import NotificationBlock, NotificationError
from pydantic import Field, SecretStr


class TicketsEmail(NotificationBlock):
    """Sends each notification as a plain-text e-mail through an SMTP server."""

    _block_type_name = "Tickets SMTP E-mail"
    _block_type_slug = "tickets-smtp-email"
    _description = "E-mail over your own SMTP server (STARTTLS, TLS or a plain local relay)."

    smtp_host: str = Field(description="SMTP server host name.")
    smtp_port: int = Field(587, description="SMTP port: 587 for STARTTLS, 465 for TLS.")
    security: Literal["starttls", "ssl", "none"] = Field("starttls")
    username: str | None = Field(None, description="Login, if the server wants one.")
    password: SecretStr | None = Field(None)
    sender: str = Field(description="The From address.")
    to: list[str] = Field(description="Recipients.")
    timeout_s: float = Field(15.0, description="Connect and command timeout.")

    def message(self, body: str, subject: str | None) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        # A subject is one line: templates may leave line breaks around their expressions.
        message["Subject"] = " ".join((subject or "Ticket classifier").split())
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.sender.partition("@")[2] or None)
        message.set_content(body)  # UTF-8, with labels as they are
        return message

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self.smtp_host, self.smtp_port, timeout=self.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_s)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                password = self.password.get_secret_value() if self.password else ""
                smtp.login(self.username, password)
            smtp.send_message(message)

    async def notify(self, body: str, subject: str | None = None) -> None:
        message = self.message(body, subject)
        try:
            await anyio.to_thread.run_sync(self.send, message)
        except (OSError, smtplib.SMTPException) as exc:
            note = f"e-mail to {', '.join(self.to)} via {self.smtp_host}:{self.smtp_port}: {exc}"
            if self._raise_on_failure:
                raise NotificationError(log=note) from exc
            self.logger.error("notification not sent: %s", note)
