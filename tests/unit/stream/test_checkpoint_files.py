"""The checkpoint file manager chosen per query: local checkpoints only, the job's own wins."""

from __future__ import annotations

from typing import Any

from batch_serving.stream.checkpoint_files import FILE_MANAGER, FILESYSTEM_BASED, checkpoint_files


class Conf:
    """The three calls of ``spark.conf`` the context uses, over a dict."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def unset(self, key: str) -> None:
        self.values.pop(key, None)


class Session:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.conf = Conf(values or {})


def test_a_local_checkpoint_gets_the_filesystem_manager_for_the_query_only() -> None:
    spark = Session()
    for where in ("/tmp/x/checkpoint", "file:///tmp/x/checkpoint"):
        with checkpoint_files(spark, where):  # type: ignore[arg-type]
            assert spark.conf.get(FILE_MANAGER) == FILESYSTEM_BASED
        assert spark.conf.get(FILE_MANAGER) is None


def test_object_stores_and_the_jobs_own_choice_are_left_alone() -> None:
    spark = Session()
    with checkpoint_files(spark, "s3a://bucket/checkpoint"):  # type: ignore[arg-type]
        assert spark.conf.get(FILE_MANAGER) is None
    own = Session({FILE_MANAGER: "com.example.Manager"})
    with checkpoint_files(own, "/tmp/x"):  # type: ignore[arg-type]
        assert own.conf.get(FILE_MANAGER) == "com.example.Manager"
    assert own.conf.get(FILE_MANAGER) == "com.example.Manager"
