from recserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankRequest(_message.Message):
    __slots__ = ("user", "item_indices", "rate_top_k", "user_embedding")
    USER_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDICES_FIELD_NUMBER: _ClassVar[int]
    RATE_TOP_K_FIELD_NUMBER: _ClassVar[int]
    USER_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    user: _common_pb2.UserFeatures
    item_indices: _containers.RepeatedScalarFieldContainer[int]
    rate_top_k: int
    user_embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, user: _Optional[_Union[_common_pb2.UserFeatures, _Mapping]] = ..., item_indices: _Optional[_Iterable[int]] = ..., rate_top_k: _Optional[int] = ..., user_embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("p_positive", "rating", "bundle_version", "execution_provider", "p_interact")
    P_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    P_INTERACT_FIELD_NUMBER: _ClassVar[int]
    p_positive: _containers.RepeatedScalarFieldContainer[float]
    rating: _containers.RepeatedScalarFieldContainer[float]
    bundle_version: str
    execution_provider: str
    p_interact: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, p_positive: _Optional[_Iterable[float]] = ..., rating: _Optional[_Iterable[float]] = ..., bundle_version: _Optional[str] = ..., execution_provider: _Optional[str] = ..., p_interact: _Optional[_Iterable[float]] = ...) -> None: ...
