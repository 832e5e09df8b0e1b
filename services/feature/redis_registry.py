"""The registry of items added at runtime, in Redis, shared by every feature replica.

    {prefix}:items:ordinals   HASH  item_id -> ordinal (allocated once, for ever)
    {prefix}:items:entries    HASH  ordinal -> JSON {id, title, tags, description,
                                                     [embedding (base64 f32)], ordinal, change}
                                    (entries written before proxies were dropped may still
                                    carry a proxy row: NewItem.from_json ignores it)
    {prefix}:items:changes    ZSET  ordinal scored by its last change
    {prefix}:items:count      counter of ordinals;  {prefix}:items:change  change counter

One Lua script allocates ordinals and change numbers and merges an upsert (atomic in Redis), so
replicas never disagree on an item's ordinal. Each replica mirrors the registry in an
ItemRegistry (services.feature.registry) and pulls what changed since its last pull.
Not bundle-scoped: the registry outlives bundles (rows are computed per bundle).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from services.contract.added_items import AddedItem, NewItem

# KEYS: ordinals, entries, changes, count, change. ARGV: id_1, json_1, id_2, json_2, ...
# While the text is unchanged, no embedding keeps the old one (registry.merged).
_UPSERT_LUA = """
local out = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local new = cjson.decode(ARGV[i + 1])
  local ord = redis.call('HGET', KEYS[1], id)
  if not ord then
    ord = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[1], id, ord)
  else
    local old = cjson.decode(redis.call('HGET', KEYS[2], ord))
    if old.title == new.title and old.description == new.description
        and cjson.encode(old.tags) == cjson.encode(new.tags) then
      if new.embedding == nil then new.embedding = old.embedding end
    end
  end
  local change = redis.call('INCR', KEYS[5])
  new.ordinal = tonumber(ord)
  new.change = change
  local text = cjson.encode(new)
  redis.call('HSET', KEYS[2], ord, text)
  redis.call('ZADD', KEYS[3], change, ord)
  out[#out + 1] = text
end
return out
"""

# KEYS as above; ARGV: after, limit. Atomic, so every entry comes with the change it is
# listed under (a concurrent update cannot slip between the two reads).
_CHANGED_LUA = """
local ords = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #ords == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ords))
"""


def entry_from_json(text: str) -> AddedItem:
    obj = json.loads(text)
    if isinstance(obj.get("tags"), dict):  # Lua's cjson writes an empty array as {}
        obj["tags"] = []
    return AddedItem(int(obj["ordinal"]), 0, NewItem.from_json(obj), int(obj["change"]))


class RedisItemRegistry:
    """Upserts and change-ordered reads of the shared registry (raises redis errors; the store
    maps them to gRPC statuses)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        base = f"{prefix}:items:"
        self.keys = [base + k for k in ("ordinals", "entries", "changes", "count", "change")]
        self._upsert = client.register_script(_UPSERT_LUA)
        self._changed = client.register_script(_CHANGED_LUA)

    def upsert(self, items: Sequence[NewItem]) -> list[AddedItem]:
        args: list[str] = []
        for item in items:
            args += [item.item_id, json.dumps(item.to_json(), ensure_ascii=False)]
        return [entry_from_json(t) for t in self._upsert(keys=self.keys, args=args)]

    def changed_after(self, after: int, limit: int) -> list[AddedItem]:
        """Entries whose last change > after, in change order."""
        texts = self._changed(keys=self.keys, args=[int(after), int(limit)])
        entries = [entry_from_json(t) for t in texts if t is not None]
        entries.sort(key=lambda e: e.change)
        return entries
