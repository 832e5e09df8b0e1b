from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_VIEW: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_RATING: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]

class Segment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_UNSPECIFIED: _ClassVar[Segment]
    SEGMENT_NEW: _ClassVar[Segment]
    SEGMENT_HIGH_VALUE: _ClassVar[Segment]
    SEGMENT_ACTIVE: _ClassVar[Segment]
    SEGMENT_AT_RISK: _ClassVar[Segment]
    SEGMENT_DORMANT: _ClassVar[Segment]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_VIEW: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_RATING: EventType
EVENT_TYPE_PURCHASE: EventType
SEGMENT_UNSPECIFIED: Segment
SEGMENT_NEW: Segment
SEGMENT_HIGH_VALUE: Segment
SEGMENT_ACTIVE: Segment
SEGMENT_AT_RISK: Segment
SEGMENT_DORMANT: Segment

class Event(_message.Message):
    __slots__ = ("user_id", "item_id", "type", "timestamp", "rating", "value")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    type: EventType
    timestamp: int
    rating: float
    value: float
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., timestamp: _Optional[int] = ..., rating: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("exclude_seen", "include_tags", "exclude_tags", "exclude_items")
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TAGS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_TAGS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    exclude_seen: bool
    include_tags: _containers.RepeatedScalarFieldContainer[str]
    exclude_tags: _containers.RepeatedScalarFieldContainer[str]
    exclude_items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exclude_seen: _Optional[bool] = ..., include_tags: _Optional[_Iterable[str]] = ..., exclude_tags: _Optional[_Iterable[str]] = ..., exclude_items: _Optional[_Iterable[str]] = ...) -> None: ...

class UserFeatures(_message.Message):
    __slots__ = ("user_id", "known", "user_index", "profile", "history", "seen", "activity_days", "activity_values", "event_count", "bundle_version", "history_times", "history_kinds")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    USER_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_VALUES_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_TIMES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_KINDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    known: bool
    user_index: int
    profile: _containers.RepeatedScalarFieldContainer[int]
    history: _containers.RepeatedScalarFieldContainer[int]
    seen: _containers.RepeatedScalarFieldContainer[int]
    activity_days: _containers.RepeatedScalarFieldContainer[int]
    activity_values: _containers.RepeatedScalarFieldContainer[float]
    event_count: int
    bundle_version: str
    history_times: _containers.RepeatedScalarFieldContainer[int]
    history_kinds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, user_id: _Optional[str] = ..., known: _Optional[bool] = ..., user_index: _Optional[int] = ..., profile: _Optional[_Iterable[int]] = ..., history: _Optional[_Iterable[int]] = ..., seen: _Optional[_Iterable[int]] = ..., activity_days: _Optional[_Iterable[int]] = ..., activity_values: _Optional[_Iterable[float]] = ..., event_count: _Optional[int] = ..., bundle_version: _Optional[str] = ..., history_times: _Optional[_Iterable[int]] = ..., history_kinds: _Optional[_Iterable[int]] = ...) -> None: ...

class ItemInfo(_message.Message):
    __slots__ = ("item_id", "item_index", "title", "tags", "year", "popularity")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    item_index: int
    title: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    year: int
    popularity: int
    def __init__(self, item_id: _Optional[str] = ..., item_index: _Optional[int] = ..., title: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., year: _Optional[int] = ..., popularity: _Optional[int] = ...) -> None: ...

class UserValue(_message.Message):
    __slots__ = ("user_id", "p_active", "expected_transactions", "expected_value", "segment", "horizon_weeks", "unit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    P_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    HORIZON_WEEKS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    p_active: float
    expected_transactions: float
    expected_value: float
    segment: Segment
    horizon_weeks: float
    unit: str
    def __init__(self, user_id: _Optional[str] = ..., p_active: _Optional[float] = ..., expected_transactions: _Optional[float] = ..., expected_value: _Optional[float] = ..., segment: _Optional[_Union[Segment, str]] = ..., horizon_weeks: _Optional[float] = ..., unit: _Optional[str] = ...) -> None: ...

class NewItem(_message.Message):
    __slots__ = ("item_id", "title", "tags", "description", "embedding", "row")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    row: int
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ..., row: _Optional[int] = ...) -> None: ...

class AddedItem(_message.Message):
    __slots__ = ("ordinal", "row", "item", "change")
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    ordinal: int
    row: int
    item: NewItem
    change: int
    def __init__(self, ordinal: _Optional[int] = ..., row: _Optional[int] = ..., item: _Optional[_Union[NewItem, _Mapping]] = ..., change: _Optional[int] = ...) -> None: ...

class AddItemsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[NewItem]
    def __init__(self, items: _Optional[_Iterable[_Union[NewItem, _Mapping]]] = ...) -> None: ...

class AddItemsResponse(_message.Message):
    __slots__ = ("items", "bundle_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AddedItem]
    bundle_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[AddedItem, _Mapping]]] = ..., bundle_version: _Optional[str] = ...) -> None: ...
