"""Ways in other than SMTP: IMAP mailboxes, Amazon SES through S3/SQS, provider webhooks.

Each feeds the same durable intake as the SMTP gateway (``storage.intake``):
raw bytes and a row committed, deduplicated per tenant by SHA-256, before the
source is told "done"; then the ids go to the same pipeline.
"""
