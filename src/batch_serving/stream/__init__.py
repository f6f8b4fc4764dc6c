"""Streaming micro-batch scoring: Spark Structured Streaming drives the batch scoring core.

Modules: ``schema`` (the landing files' columns), ``source`` (the ``StreamSource`` seam: files,
rate), ``validate`` (a micro-batch part checked by the batch's column rules), ``batches`` (one
micro-batch, start to commit), ``sink`` (the ``StreamSink`` seam: idempotent files and the
batch marker), ``layout`` (every path the stream writes), ``poison`` (unreadable files,
reported once), ``requests`` (asynchronous API requests as landing files), ``metrics``
(progress in logs and a Prometheus text file), ``runner`` (the query).
"""
