"""Many map-state reads or writes in one exchange with the JVM's state server.

pyspark's ``MapState`` sends one request and waits for its answer, so a release of a thousand
entities is two thousand round trips, each a pair of context switches (most of the stream's
time on a busy two-core machine). The state server answers a connection's requests one by one
in the order it reads them; so the requests of a whole release are written at once and the
answers read back in that order. A thread writes while the caller reads, so neither side's
socket buffer can fill up and stall the other, whatever the values' sizes.

This speaks the protocol of pyspark's own client (``StateMessage`` protobufs, the client's
serializer) as pyspark 4.2 has it; under another pyspark, or if the client's internals are not
there, the plain one-by-one calls are used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pyspark
from pyspark.serializers import write_int
from pyspark.sql.streaming.stateful_processor import MapState

Key = tuple[Any, ...]
TESTED_PYSPARK = "4.2."  # the state server's protocol as tested (tests/unit/features)


class StatePipelineError(RuntimeError):
    """The state server refused a pipelined request (the message is the server's)."""


def get_values(state: MapState, keys: Sequence[Key]) -> list[tuple[Any, ...] | None]:
    """``state.getValue(k)`` for each key, in one exchange."""
    parts = _parts(state)
    if parts is None:
        return [state.getValue(k) for k in keys]
    client, api, name = parts
    from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

    requests = [
        _map_call(name, getValue=msg.GetValue(userKey=_pickled(api, client.user_key_schema, k)))
        for k in keys
    ]
    answers = _exchange(api, requests, f"get from map state {name}")
    return [api._deserialize_from_bytes(value) if value else None for value in answers]


def update_values(state: MapState, items: Sequence[tuple[Key, tuple[Any, ...]]]) -> None:
    """``state.updateValue(k, v)`` for each pair, in one exchange."""
    parts = _parts(state)
    if parts is None:
        for key, value in items:
            state.updateValue(key, value)
        return
    client, api, name = parts
    from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

    requests = [
        _map_call(
            name,
            updateValue=msg.UpdateValue(
                userKey=_pickled(api, client.user_key_schema, k),
                value=_pickled(api, client.value_schema, v),
            ),
        )
        for k, v in items
    ]
    _exchange(api, requests, f"update of map state {name}")


def remove_keys(state: MapState, keys: Sequence[Key]) -> None:
    """``state.removeKey(k)`` for each key, in one exchange."""
    parts = _parts(state)
    if parts is None:
        for key in keys:
            state.removeKey(key)
        return
    client, api, name = parts
    from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

    requests = [
        _map_call(name, removeKey=msg.RemoveKey(userKey=_pickled(api, client.user_key_schema, k)))
        for k in keys
    ]
    _exchange(api, requests, f"removal from map state {name}")


def _map_call(name: str, **call: Any) -> bytes:
    """One map-state request as the client sends it: ``call`` is its one method."""
    from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

    variable = msg.StateVariableRequest(mapStateCall=msg.MapStateCall(stateName=name, **call))
    return bytes(msg.StateRequest(stateVariableRequest=variable).SerializeToString())


def _parts(state: MapState) -> tuple[Any, Any, str] | None:
    """The client's pieces the exchange speaks through, or None (the plain calls) under a
    pyspark whose protocol was not tested here or whose client lacks them."""
    if not pyspark.__version__.startswith(TESTED_PYSPARK):
        return None
    client = getattr(state, "_mapStateClient", None)
    api = getattr(client, "_stateful_processor_api_client", None)
    name = getattr(state, "_stateName", None)
    needed = ("sockfile", "pickleSer", "_deserialize_from_bytes", "_receive_proto_message")
    if api is None or name is None or not all(hasattr(api, a) for a in needed):
        return None
    return client, api, name


def _pickled(api: Any, schema: Any, value: tuple[Any, ...]) -> bytes:
    """What the client's ``_serialize_to_bytes`` sends, without its walk converting NumPy
    and pandas scalars element by element: these values are plain Python already."""
    return bytes(api.pickleSer.dumps(schema.toInternal(value)))


def _exchange(api: Any, requests: list[bytes], what: str) -> list[bytes]:
    """Write every request (on a thread), read every answer; the answers' values in order."""
    if not requests:
        return []
    failed: list[BaseException] = []

    def write_all() -> None:
        try:
            for request in requests:
                write_int(0, api.sockfile)  # the protocol's message version
                write_int(len(request), api.sockfile)
                api.sockfile.write(request)
            api.sockfile.flush()
        except BaseException as error:  # re-raised below, by the reader's thread
            failed.append(error)

    writer = threading.Thread(target=write_all)
    writer.start()
    answers = []
    try:
        for _ in requests:
            status, error, value = api._receive_proto_message()
            if status != 0:
                raise StatePipelineError(f"the state server refused a {what}: {error}")
            answers.append(value)
    finally:
        writer.join()
    if failed:
        raise StatePipelineError(f"writing a {what} failed: {failed[0]}") from failed[0]
    return answers
