"""Online learning with gated promotion and one-command rollback (issue #25).

The loop, once a day (each arrow one function call)::

    labels table ──point_in_time_join──> matched labels (features + score the model saw)
        │                                      │
        │                            learn_labels (day batches, checkpoint after each)
        │                                      │
        │                            register_snapshot ──> registry version @challenger
        │                                      │
        └──────── recent labelled rows ──> promote: champion vs challenger, every gate
                                               │ passes          │ a gate fails
                                        @champion moves     PromotionGateError (exit 11)
                                        (evidence: run + tags)
                                               │
                                         rollback: @champion back to the replaced version

Modules: ``settings`` (learning.yaml), ``labels`` (labels in, point in time), ``learner``
(the online model), ``checkpoint`` (state + watermark + late-horizon keys, atomic), ``loop``
(late labels, then by day), ``cadence`` (when a snapshot is due), ``snapshots`` (registry
versions), ``metrics`` and ``gates`` (the judge), ``promote``
(promote, rollback). Nothing here imports pyspark.
"""
