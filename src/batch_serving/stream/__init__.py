"""Streaming micro-batch scoring: Spark Structured Streaming drives the batch scoring core.

Modules: ``schema`` (the events' columns), ``source`` (the ``StreamSource`` seam: files,
rate), ``kafka_source`` (Kafka topics of JSON messages), ``validate`` (a micro-batch part
checked by the batch's column rules), ``batches`` (one micro-batch, start to commit), ``sink``
(the ``StreamSink`` seam: idempotent files and the batch marker; several sinks at once),
``kafka_sink`` (a topic, one Kafka transaction per batch), ``layout`` (every path the stream
writes), ``poison`` (unreadable files, reported once), ``requests`` (asynchronous API requests
as landing files), ``metrics`` (progress in logs and a Prometheus text file), ``runner`` (the
query).
"""
