"""Windowed features of an entity's recent events, point-in-time correct (issue #24).

One pure function (``compute.window_features``) computes, for query times ``t``, the
aggregates of an entity's events strictly before ``t`` within ``(t - w, t)``. The stream's
stateful processor (``processor``, wired by ``stream``), the offline training-set builder
(``offline``) and the online store's reader (``online``) all call it, so a feature served in the
stream equals the one in a training set for the same event. ``spec`` turns the job's
``windows:`` section into the typed spec they share; ``fraud_example`` shows why it matters.

Modules without pyspark: ``spec``, ``compute``, ``offline``, ``online``, ``fraud_example``.
The stream job takes them through ``stream.windowed`` (the ``StreamSource`` variant; features
sits below stream in the import layers, so it never imports stream).
"""
