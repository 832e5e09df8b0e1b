"""Real data sets in one event schema: MovieLens-100K and CDNOW."""

from training.data.cdnow import load_cdnow
from training.data.fetch import DataFetchError, fetch_all
from training.data.movielens import load_movielens
from training.data.schema import EVENT_COLUMNS, InteractionData, make_events

__all__ = [
    "EVENT_COLUMNS",
    "DataFetchError",
    "InteractionData",
    "fetch_all",
    "load_cdnow",
    "load_movielens",
    "make_events",
]
