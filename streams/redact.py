"""Keep secrets out of the logs.

kafka-python logs its whole configuration, SASL password included, at DEBUG. A filter on the root
handlers replaces every configured secret (SASL and ClickHouse passwords) with ``***`` in any
record, whoever logged it.
"""

from __future__ import annotations

import logging

from config.settings import Settings


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error report
            return True
        if any(s in msg for s in self.secrets):
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


def install(settings: Settings) -> RedactSecrets:
    """Add the filter to every handler of the root logger (call after logging is set up)."""
    f = RedactSecrets([settings.sasl_password() or "", str(settings.clickhouse["password"])])
    for h in logging.getLogger().handlers:
        if not any(isinstance(x, RedactSecrets) for x in h.filters):
            h.addFilter(f)
    return f
