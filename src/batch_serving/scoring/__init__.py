"""The scoring core: pure Arrow in, Arrow out (no pyspark), shared by every engine."""
