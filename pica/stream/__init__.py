"""The event stream: stored messages and group changes published to a broker for other systems (analytics,
archiving, compliance), as jobs of the durable queue (``stream`` jobs, pica/store/job_rules.py).

- :mod:`pica.stream.nats`: the handler that publishes to NATS JetStream (the only module importing ``nats``).

Order: the queue runs a conversation's stream jobs one at a time, in commit order, so each conversation's events
reach the broker in seq order. De-duplication: every publication carries ``Nats-Msg-Id: <conversation_id>:<seq>``;
JetStream drops a repeat within its duplicate window, and consumers de-duplicate by the same key beyond it.
"""
