from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackRecord(_message.Message):
    __slots__ = ("id", "label", "value", "timestamp")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    id: str
    label: str
    value: float
    timestamp: float
    def __init__(self, id: _Optional[str] = ..., label: _Optional[str] = ..., value: _Optional[float] = ..., timestamp: _Optional[float] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "records")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    records: _containers.RepeatedCompositeFieldContainer[FeedbackRecord]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., records: _Optional[_Iterable[_Union[FeedbackRecord, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("received", "joined", "unmatched", "unknown_labels")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_LABELS_FIELD_NUMBER: _ClassVar[int]
    received: int
    joined: int
    unmatched: int
    unknown_labels: int
    def __init__(self, received: _Optional[int] = ..., joined: _Optional[int] = ..., unmatched: _Optional[int] = ..., unknown_labels: _Optional[int] = ...) -> None: ...
