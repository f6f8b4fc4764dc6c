"""``state_pipeline``: many map-state requests written at once, answers read in order, with
pyspark's real client over a socket. The JVM's state server is played by a thread answering
each request in the order read (what the server does), with answers large enough to fill both
sockets' buffers: the pipelining must neither stall nor mix answers up."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.serializers import CPickleSerializer, read_int, write_int
from pyspark.sql.streaming.map_state_client import MapStateClient
from pyspark.sql.streaming.proto import StateMessage_pb2 as msg
from pyspark.sql.streaming.stateful_processor import MapState
from pyspark.sql.streaming.stateful_processor_api_client import StatefulProcessorApiClient
from pyspark.sql.types import ArrayType, LongType, StringType, StructField, StructType

from batch_serving.features import state_pipeline
from batch_serving.features.state_pipeline import (
    StatePipelineError,
    get_values,
    remove_keys,
    update_values,
)

KEY = StructType([StructField("card", StringType())])
VALUE = StructType([StructField("times", ArrayType(LongType()))])
BIG = 20_000  # longs per value: ~100 KB an answer, far beyond a socket's buffer in total


class StateServer:
    """Answers like the state server: a map per name, requests in order, one answer each."""

    def __init__(self, path: Path, refuse: str | None = None) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.refuse = refuse
        self.maps: dict[bytes, bytes] = {}
        self.log: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection, _ = self.listener.accept()
        stream = connection.makefile("rwb", 65536)
        pickle = CPickleSerializer()
        try:
            while True:
                read_int(stream)  # the message version
                request = msg.StateRequest.FromString(stream.read(read_int(stream)))
                call = request.stateVariableRequest.mapStateCall
                kind = call.WhichOneof("method")
                key = getattr(call, kind).userKey
                self.log.append(f"{kind} {pickle.loads(key)[0]}")
                status, value = 0, b""
                if pickle.loads(key)[0] == self.refuse:
                    status = 1
                elif kind == "getValue":
                    value = self.maps.get(key, b"")
                elif kind == "updateValue":
                    self.maps[key] = call.updateValue.value
                else:
                    self.maps.pop(key, None)
                answer = msg.StateResponse(statusCode=status, errorMessage="no", value=value)
                data = answer.SerializeToString()
                write_int(len(data), stream)
                stream.write(data)
                stream.flush()
        except (EOFError, OSError):  # the client closed (after a refusal: mid-stream)
            connection.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[StateServer, MapState]]:
    server = StateServer(tmp_path / "state.sock")
    api = StatefulProcessorApiClient(str(tmp_path / "state.sock"), KEY)
    yield server, MapState(MapStateClient(api, KEY, VALUE), "history")
    api._client_socket.close()


def test_many_big_values_round_trip_in_order(served: tuple[StateServer, Any]) -> None:
    server, state = served
    keys = [(f"c{i}",) for i in range(300)]
    update_values(state, [(k, ([i] * BIG,)) for i, k in enumerate(keys)])
    got = get_values(state, [*keys, ("never",)])
    assert [v[0][0] if v else None for v in got] == [*range(300), None]
    assert all(len(v[0]) == BIG for v in got[:-1])
    remove_keys(state, keys[:100])
    assert [v is None for v in get_values(state, keys)] == [True] * 100 + [False] * 200
    assert server.log[:2] == ["updateValue c0", "updateValue c1"]


def test_a_refused_request_names_the_state_and_the_server_message(tmp_path: Path) -> None:
    StateServer(tmp_path / "state.sock", refuse="c2")
    api = StatefulProcessorApiClient(str(tmp_path / "state.sock"), KEY)
    state = MapState(MapStateClient(api, KEY, VALUE), "history")
    with pytest.raises(StatePipelineError, match="update of map state history: no"):
        update_values(state, [((f"c{i}",), ([i],)) for i in range(5)])


def test_under_an_untested_pyspark_the_plain_calls_give_the_same_answers(
    served: tuple[StateServer, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, state = served
    monkeypatch.setattr(state_pipeline, "TESTED_PYSPARK", "9.9.")
    update_values(state, [(("a",), ([1, 2],)), (("b",), ([3],))])
    got = get_values(state, [("a",), ("b",), ("c",)])
    assert [v[0] if v else None for v in got] == [[1, 2], [3], None]
    remove_keys(state, [("a",)])
    assert get_values(state, [("a",)]) == [None]
    assert server.log == [
        "updateValue a",
        "updateValue b",
        "getValue a",
        "getValue b",
        "getValue c",
        "removeKey a",
        "getValue a",
    ]
