"""Notifications people read, retried until delivered.

- ``payloads``   (pure) one :class:`~services.notify.payloads.Notification` -> the JSON body of a format:
                 ``generic`` (the tower's own JSON), ``slack`` (incoming webhook, Block Kit), ``teams``
                 (an Adaptive Card in the ``message``/``attachments`` envelope).
- ``config``     the ``notifications:`` section of tower.yaml and the webhook URLs (environment only).
- ``outbox``     the delivery table: one row per (notification key, destination), claimed atomically,
                 retried with capped exponential backoff, every failure recorded.
- ``sources``    what is owed: open alert episodes and ledger promotions that have no outbox row yet.
- ``sender``     ``deliver_due``: enqueue what is owed, then POST what is due.
"""
