"""Outbound for the generic HTTP channel: POST each outbox row to the bridge's callback URL.

Bot replies to an inbound request travel in its response; everything else (agent replies,
surveys sent later, notices) is pushed here. Delivery is at least once, so every callback
carries `Idempotency-Key: outbox-<id>` for the bridge to drop a repeat.
"""

from __future__ import annotations

import aiohttp

from carebot.channels.http import SECRET_HEADER
from carebot.delivery.outbox import OutboxItem, PermanentDeliveryError, TransientDeliveryError

# Statuses where trying again can help; any other 4xx means the bridge refuses this message.
RETRYABLE_4XX = {408, 409, 425, 429}


class HttpCallbackSender:
    """Delivers outbox rows of the `http` channel to CAREBOT_HTTP_CHANNEL_CALLBACK_URL."""

    def __init__(self, url: str, secret: str = "", timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()

    async def send(self, item: OutboxItem) -> str | None:
        """POST the message; 2xx delivered, 4xx permanent (but 408/409/425/429), else retry."""
        assert self._session is not None, "start() the sender first"
        headers = {"Idempotency-Key": f"outbox-{item.id}"}
        if self.secret:
            headers[SECRET_HEADER] = self.secret
        body = {
            "outbox_id": item.id,
            "user_id": item.recipient,
            "conversation_id": item.conversation_id,
            "text": item.text,
            "buttons": [b.to_dict() for b in item.buttons],
        }
        try:
            async with self._session.post(self.url, json=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return None
                detail = (await resp.text())[:200]
                if 400 <= resp.status < 500 and resp.status not in RETRYABLE_4XX:
                    raise PermanentDeliveryError(f"bridge answered {resp.status}: {detail}")
                raise TransientDeliveryError(
                    f"bridge answered {resp.status}: {detail}", _retry_after(resp)
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientDeliveryError(f"bridge unreachable: {type(exc).__name__}") from None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None
