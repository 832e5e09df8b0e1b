from recserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendContext(_message.Message):
    __slots__ = ("recent_items", "time")
    RECENT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    recent_items: _containers.RepeatedScalarFieldContainer[str]
    time: int
    def __init__(self, recent_items: _Optional[_Iterable[str]] = ..., time: _Optional[int] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "filters", "context")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    filters: _common_pb2.Filters
    context: RecommendContext
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ..., context: _Optional[_Union[RecommendContext, _Mapping]] = ...) -> None: ...

class StageScores(_message.Message):
    __slots__ = ("retrieval", "ranking", "rating", "interaction")
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_FIELD_NUMBER: _ClassVar[int]
    retrieval: float
    ranking: float
    rating: float
    interaction: float
    def __init__(self, retrieval: _Optional[float] = ..., ranking: _Optional[float] = ..., rating: _Optional[float] = ..., interaction: _Optional[float] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "title", "tags", "score", "predicted_rating", "stage_scores", "price", "currency")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_RATING_FIELD_NUMBER: _ClassVar[int]
    STAGE_SCORES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    score: float
    predicted_rating: float
    stage_scores: StageScores
    price: float
    currency: str
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., score: _Optional[float] = ..., predicted_rating: _Optional[float] = ..., stage_scores: _Optional[_Union[StageScores, _Mapping]] = ..., price: _Optional[float] = ..., currency: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "user_value", "cold_start", "fallbacks")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_VALUE_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    model_version: str
    user_value: _common_pb2.UserValue
    cold_start: bool
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., user_value: _Optional[_Union[_common_pb2.UserValue, _Mapping]] = ..., cold_start: _Optional[bool] = ..., fallbacks: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictRatingsRequest(_message.Message):
    __slots__ = ("user_id", "item_ids")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictedRating(_message.Message):
    __slots__ = ("item_id", "rating", "p_positive", "p_interact")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    P_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    P_INTERACT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    rating: float
    p_positive: float
    p_interact: float
    def __init__(self, item_id: _Optional[str] = ..., rating: _Optional[float] = ..., p_positive: _Optional[float] = ..., p_interact: _Optional[float] = ...) -> None: ...

class PredictRatingsResponse(_message.Message):
    __slots__ = ("ratings", "model_version", "cold_start")
    RATINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    ratings: _containers.RepeatedCompositeFieldContainer[PredictedRating]
    model_version: str
    cold_start: bool
    def __init__(self, ratings: _Optional[_Iterable[_Union[PredictedRating, _Mapping]]] = ..., model_version: _Optional[str] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "k", "filters")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    filters: _common_pb2.Filters
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "model_version", "title")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    model_version: str
    title: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class RecommendTagsRequest(_message.Message):
    __slots__ = ("user_id", "k")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...

class TagAffinity(_message.Message):
    __slots__ = ("tag", "affinity")
    TAG_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    tag: str
    affinity: float
    def __init__(self, tag: _Optional[str] = ..., affinity: _Optional[float] = ...) -> None: ...

class RecommendTagsResponse(_message.Message):
    __slots__ = ("tags", "model_version", "cold_start")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[TagAffinity]
    model_version: str
    cold_start: bool
    def __init__(self, tags: _Optional[_Iterable[_Union[TagAffinity, _Mapping]]] = ..., model_version: _Optional[str] = ..., cold_start: _Optional[bool] = ...) -> None: ...

class ScoreUsersRequest(_message.Message):
    __slots__ = ("user_ids", "time")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    time: int
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., time: _Optional[int] = ...) -> None: ...

class ScoreUsersResponse(_message.Message):
    __slots__ = ("values", "model_version")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_common_pb2.UserValue]
    model_version: str
    def __init__(self, values: _Optional[_Iterable[_Union[_common_pb2.UserValue, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_common_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_common_pb2.Event, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...
