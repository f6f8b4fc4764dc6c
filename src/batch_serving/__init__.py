"""batch-serving: Spark batch scoring of warehouse Parquet with MLflow registry models."""

__version__ = "0.1.0"
