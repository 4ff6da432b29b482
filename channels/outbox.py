"""The outbox: each message written as a file, for review or when no token is set.

One file per delivery (`<channel>/c<campaign>-d<delivery>-<link code>.txt`; the
random code keeps two databases sharing a folder apart): a JSON header line, a
blank line, then the text exactly as the platform would get it. Writing the same
delivery again replaces its file, so a retry never makes a second copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from outreach.channel import AuthFailed, RenderedMessage, Sent


class OutboxChannel:
    """Writes messages under a folder instead of posting them."""

    name = "outbox"
    idempotent = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = f"files under {folder}"

    def path_for(self, message: RenderedMessage) -> Path:
        """Where a delivery's file goes."""
        return (
            self.folder
            / message.channel
            / f"c{message.campaign_id}-d{message.delivery_id}-{message.link_code or 'nolink'}.txt"
        )

    async def send(self, message: RenderedMessage) -> Sent:
        """Write the message file atomically (a reader never sees half of it)."""
        path = await asyncio.to_thread(self._write, message)
        return Sent(platform_id=f"outbox:{path.relative_to(self.folder).as_posix()}")

    def _write(self, message: RenderedMessage) -> Path:
        path = self.path_for(message)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "channel": message.channel,
            "target": message.target,
            "campaign": message.campaign_id,
            "delivery": message.delivery_id,
            "language": message.language,
            "markup": message.markup,
            "link": {"code": message.link_code, "destination": message.destination},
        }
        body = json.dumps(header, ensure_ascii=False) + "\n\n" + message.text + "\n"
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path

    async def check(self, target: str) -> str:
        """Whether the outbox folder can take files (made if missing)."""
        try:
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise AuthFailed(f"cannot write the outbox {self.folder}: {exc.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise AuthFailed(f"cannot write the outbox {self.folder}: permission denied")
        return f"writes files under {self.folder}"

    async def close(self) -> None:
        """Nothing to release: files are closed as they are written."""


def read_outbox_file(path: Path) -> tuple[dict[str, object], str]:
    """The header and text of an outbox file (for people and tests reading it back)."""
    header, _, text = path.read_text(encoding="utf-8").partition("\n\n")
    return json.loads(header), text.removesuffix("\n")
