from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataPlaneMessage(_message.Message):
    __slots__ = ("hello", "ack", "nack", "status", "event_batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    nack: Nack
    status: Status
    event_batch: EventBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., event_batch: _Optional[_Union[EventBatch, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "hostname", "version", "plugins", "labels", "config_version", "config_hash")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    version: str
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    labels: _containers.ScalarMap[str, str]
    config_version: str
    config_hash: str
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., config_version: _Optional[str] = ..., config_hash: _Optional[str] = ...) -> None: ...

class Plugin(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("version", "hash")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    version: str
    hash: str
    def __init__(self, version: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("version", "error_detail")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    version: str
    error_detail: str
    def __init__(self, version: _Optional[str] = ..., error_detail: _Optional[str] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("config_version", "config_hash", "events_dropped", "events_buffered")
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_BUFFERED_FIELD_NUMBER: _ClassVar[int]
    config_version: str
    config_hash: str
    events_dropped: int
    events_buffered: int
    def __init__(self, config_version: _Optional[str] = ..., config_hash: _Optional[str] = ..., events_dropped: _Optional[int] = ..., events_buffered: _Optional[int] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("boot_id", "first_seq", "events", "events_json", "count")
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    boot_id: str
    first_seq: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    events_json: bytes
    count: int
    def __init__(self, boot_id: _Optional[str] = ..., first_seq: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., events_json: _Optional[bytes] = ..., count: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("source", "event", "payload", "ts")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    source: str
    event: str
    payload: bytes
    ts: float
    def __init__(self, source: _Optional[str] = ..., event: _Optional[str] = ..., payload: _Optional[bytes] = ..., ts: _Optional[float] = ...) -> None: ...

class ControlPlaneMessage(_message.Message):
    __slots__ = ("snapshot_chunk", "delta", "rejection", "event_ack", "heartbeat")
    SNAPSHOT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot_chunk: SnapshotChunk
    delta: Delta
    rejection: Rejection
    event_ack: EventAck
    heartbeat: Heartbeat
    def __init__(self, snapshot_chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., delta: _Optional[_Union[Delta, _Mapping]] = ..., rejection: _Optional[_Union[Rejection, _Mapping]] = ..., event_ack: _Optional[_Union[EventAck, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("config_version",)
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    config_version: str
    def __init__(self, config_version: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("version", "hash", "index", "total", "data")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    version: str
    hash: str
    index: int
    total: int
    data: bytes
    def __init__(self, version: _Optional[str] = ..., hash: _Optional[str] = ..., index: _Optional[int] = ..., total: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("from_version", "to_version", "expected_hash", "upserts", "removals")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_HASH_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    from_version: str
    to_version: str
    expected_hash: str
    upserts: _containers.RepeatedCompositeFieldContainer[Upsert]
    removals: _containers.RepeatedCompositeFieldContainer[Removal]
    def __init__(self, from_version: _Optional[str] = ..., to_version: _Optional[str] = ..., expected_hash: _Optional[str] = ..., upserts: _Optional[_Iterable[_Union[Upsert, _Mapping]]] = ..., removals: _Optional[_Iterable[_Union[Removal, _Mapping]]] = ...) -> None: ...

class Upsert(_message.Message):
    __slots__ = ("entity_type", "id", "json")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    id: str
    json: bytes
    def __init__(self, entity_type: _Optional[str] = ..., id: _Optional[str] = ..., json: _Optional[bytes] = ...) -> None: ...

class Removal(_message.Message):
    __slots__ = ("entity_type", "id")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    id: str
    def __init__(self, entity_type: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("reason", "sync_status")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATUS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    sync_status: str
    def __init__(self, reason: _Optional[str] = ..., sync_status: _Optional[str] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("boot_id", "up_to_seq")
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    boot_id: str
    up_to_seq: int
    def __init__(self, boot_id: _Optional[str] = ..., up_to_seq: _Optional[int] = ...) -> None: ...
