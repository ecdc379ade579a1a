"""The durable job queue's workers: side work (webhook deliveries) that the store wrote as rows in the same
transaction as the message it follows (pica/store/jobs.py).

- :mod:`pica.jobs.policy`: sans-I/O: what a handler's verdict makes of a job (done, again after a backoff with full
  jitter, dead), and the backoff itself.
- :mod:`pica.jobs.worker`: :class:`JobWorker`, which claims due jobs (with a lease), runs each through the handler of
  its kind, and writes the outcomes back, batched per loop turn. It runs inside each node by default and in
  ``pica worker`` processes; any number of workers share one queue.

Delivery is at least once: a worker that dies mid-job leaves it claimed until its lease ends, then another runs it
again. Handlers send the job's key (a webhook's ``webhook-id``) so that the receiver can drop the repeat.
"""
