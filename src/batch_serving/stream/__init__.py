"""Streaming micro-batch scoring: Spark Structured Streaming drives the batch scoring core.

Modules: ``schema`` (the landing files' columns), ``source`` (the streaming DataFrame),
``layout`` (every path the stream writes), ``sink`` (one micro-batch -> idempotent files),
``poison`` (unreadable files, reported once), ``requests`` (asynchronous API requests as
landing files), ``metrics`` (progress in logs and a Prometheus text file), ``runner`` (the query).
"""
