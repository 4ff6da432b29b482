"""Platform emulators: real HTTP servers speaking the Telegram Bot API and Facebook's Graph API.

The real client libraries talk to them in tests and in the demo, so nothing is
mocked below the wire; each keeps what it accepted (the "channel", the "page") and
answers scripted faults, which is how the ambiguous failures get tested.
"""

from outreach.sandbox.faults import Fault, FaultScript, Window
from outreach.sandbox.graph import GraphEmulator, GraphPost
from outreach.sandbox.telegram import TelegramEmulator, TelegramMessage

__all__ = ["Fault", "FaultScript", "GraphEmulator", "GraphPost", "TelegramEmulator", "TelegramMessage", "Window"]
