from recserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrieveRequest(_message.Message):
    __slots__ = ("user", "k", "filters")
    USER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    user: _common_pb2.UserFeatures
    k: int
    filters: _common_pb2.Filters
    def __init__(self, user: _Optional[_Union[_common_pb2.UserFeatures, _Mapping]] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ...) -> None: ...

class RetrieveSimilarRequest(_message.Message):
    __slots__ = ("item_id", "k", "filters")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    filters: _common_pb2.Filters
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ...) -> None: ...

class Candidates(_message.Message):
    __slots__ = ("item_indices", "scores", "bundle_version", "user_embedding")
    ITEM_INDICES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    item_indices: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    bundle_version: str
    user_embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, item_indices: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., bundle_version: _Optional[str] = ..., user_embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class TagAffinitiesRequest(_message.Message):
    __slots__ = ("user", "k")
    USER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    user: _common_pb2.UserFeatures
    k: int
    def __init__(self, user: _Optional[_Union[_common_pb2.UserFeatures, _Mapping]] = ..., k: _Optional[int] = ...) -> None: ...

class TagAffinitiesResponse(_message.Message):
    __slots__ = ("tags", "affinities", "bundle_version")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AFFINITIES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    affinities: _containers.RepeatedScalarFieldContainer[float]
    bundle_version: str
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., affinities: _Optional[_Iterable[float]] = ..., bundle_version: _Optional[str] = ...) -> None: ...

class SetItemsAvailableRequest(_message.Message):
    __slots__ = ("item_ids", "available")
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ..., available: _Optional[bool] = ...) -> None: ...

class SetItemsAvailableResponse(_message.Message):
    __slots__ = ("changed", "unavailable", "bundle_version")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    changed: int
    unavailable: int
    bundle_version: str
    def __init__(self, changed: _Optional[int] = ..., unavailable: _Optional[int] = ..., bundle_version: _Optional[str] = ...) -> None: ...
