"""An example custom operator module: `redact_emails`, which replaces e-mail addresses in text.

Use it from a pipeline config with

    custom_operators: [acme_ops]
    pipeline:
      - parse: {}
      - redact_emails: {replacement: "[email]"}
      ...

The module must be importable where the driver runs (`pip install examples/custom_operators`, or
`PYTHONPATH=examples/custom_operators`). Importing it registers the operator, so `pipeline:` checks
its arguments like those of a built-in operator and the run reports its counters.

With `runtime_env`, Ray starts this operator's workers in their own environment. Here it only
sets an environment variable; a real operator would more often list pip packages, for example
`{"pip": ["phonenumbers==8.13.55"]}` (see docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, ClassVar

from pydantic import Field

from operators.base import Operator, OperatorArgs, register
from operators.records import Document

logger = logging.getLogger(__name__)

# A pragmatic pattern for addresses in prose: local part, "@", dotted domain with a letter TLD.
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


class RedactEmailsArgs(OperatorArgs):
    replacement: str = Field("[email]", description="Text that replaces each e-mail address.")


@register
class RedactEmails(Operator):
    """Replace every e-mail address in a document's sections with `replacement`."""

    name: ClassVar[str] = "redact_emails"
    Args: ClassVar[type[OperatorArgs]] = RedactEmailsArgs
    kind = "map"
    # Ray starts this operator's workers with these variables; the local executor warns that it
    # cannot set them. ACME_OPS_LOG_LEVEL sets this module's log level in the workers.
    runtime_env: ClassVar[dict[str, Any] | None] = {"env_vars": {"ACME_OPS_LOG_LEVEL": "WARNING"}}

    args: RedactEmailsArgs

    def setup(self) -> None:
        logger.setLevel(os.environ.get("ACME_OPS_LOG_LEVEL", "INFO"))

    def process(self, doc: Document) -> Document:
        redacted = 0
        for section in doc.sections:
            section.text, count = _EMAIL.subn(self.args.replacement, section.text)
            redacted += count
        if redacted:
            self.stats["emails_redacted"] += redacted
            logger.info("redacted %d e-mail addresses in %s", redacted, doc.uri)
        return doc
