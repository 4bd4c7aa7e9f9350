"""CDEvents out: ``service.deployed``/``upgraded``/``rolledback`` for every finished deployment that passed, sent as
CloudEvents 1.0 over HTTP and/or NATS through an outbox in the state store (see docs/cdevents.md).

``model``: the finished task's typed data and the pure event builder (no I/O). ``outbox``: the observer that
decides and enqueues, and the worker that delivers with backoff. ``senders``: the HTTP and NATS edges.
"""
