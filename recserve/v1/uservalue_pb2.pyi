from recserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserActivity(_message.Message):
    __slots__ = ("user_id", "days", "values")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    days: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, user_id: _Optional[str] = ..., days: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("user_ids", "activities", "as_of_day")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    AS_OF_DAY_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    activities: _containers.RepeatedCompositeFieldContainer[UserActivity]
    as_of_day: int
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., activities: _Optional[_Iterable[_Union[UserActivity, _Mapping]]] = ..., as_of_day: _Optional[int] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("values", "bundle_version")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.UserValue]
    bundle_version: str
    def __init__(self, values: _Optional[_Iterable[_Union[_common_pb2.UserValue, _Mapping]]] = ..., bundle_version: _Optional[str] = ...) -> None: ...
