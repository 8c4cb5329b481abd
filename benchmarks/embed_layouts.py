"""Redis CPU of the embedding step's two scripts under other key layouts (row 4's note).

Not car-dream code: stand-alone Lua for the fetch (ids, contents, revisions of one page of
the work index) and the store (revision check, write, index update) of 100,000 nodes in
batches of 500, on a private redis-server, for the layout car-dream uses and three others.
Each number is the server's own CPU (``INFO cpu``), the median of three runs, next to the
default embedder's time on the same texts. ``python -m benchmarks.embed_layouts``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import redis
from redis.typing import EncodableT, FieldT

from benchmarks.bench import Server, content, redis_cpu
from car_dream.embedder import HashingEmbedder

N, BATCH, DIMS = 100_000, 500, 256

# The layout in use: a set of ids; content and revision read from each node hash; the
# store checks the revision in the node hash and writes the vector into it.
FETCH_NODE = r"""
local page = redis.call('SSCAN', 'idx', ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(page[2]) do
  local f = redis.call('HMGET', 'n:' .. id, 'content', 'rev')
  out[#out + 1] = {id, f[1], f[2]}
end
return '["' .. page[1] .. '", ' .. cjson.encode(out) .. ']'
"""
STORE_NODE = r"""
local size, blob = tonumber(ARGV[1]), ARGV[4]
local ids, revs, done = {}, {}, {}
for id in string.gmatch(ARGV[2], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[3], '[^\n]+') do revs[#revs + 1] = rev end
local listed = redis.call('SMISMEMBER', 'idx', unpack(ids))
for i, id in ipairs(ids) do
  if listed[i] == 1 and redis.call('HGET', 'n:' .. id, 'rev') == revs[i] then
    redis.call('HSET', 'n:' .. id, 'emb', string.sub(blob, (i - 1) * size + 1, i * size))
    done[#done + 1] = id
  end
end
if #done > 0 then redis.call('SREM', 'idx', unpack(done)) end
return #done
"""
# The index is a sorted set scored by revision: the store checks it in bulk (ZMSCORE).
FETCH_ZSET = r"""
local page = redis.call('ZSCAN', 'idx', ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out, m = {}, page[2]
for i = 1, #m, 2 do
  out[#out + 1] = {m[i], redis.call('HGET', 'n:' .. m[i], 'content'), m[i + 1]}
end
return '["' .. page[1] .. '", ' .. cjson.encode(out) .. ']'
"""
STORE_ZSET = r"""
local size, blob = tonumber(ARGV[1]), ARGV[4]
local ids, revs, done = {}, {}, {}
for id in string.gmatch(ARGV[2], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[3], '[^\n]+') do revs[#revs + 1] = rev end
local scores = redis.call('ZMSCORE', 'idx', unpack(ids))
for i, id in ipairs(ids) do
  if scores[i] == revs[i] then
    redis.call('HSET', 'n:' .. id, 'emb', string.sub(blob, (i - 1) * size + 1, i * size))
    done[#done + 1] = id
  end
end
if #done > 0 then redis.call('ZREM', 'idx', unpack(done)) end
return #done
"""
# The index is a hash id -> "rev:content": the fetch reads no node at all.
FETCH_PAYLOAD = r"""
local page = redis.call('HSCAN', 'idx', ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out, m = {}, page[2]
for i = 1, #m, 2 do
  local c = string.find(m[i + 1], ':', 1, true)
  out[#out + 1] = {m[i], string.sub(m[i + 1], c + 1), string.sub(m[i + 1], 1, c - 1)}
end
return '["' .. page[1] .. '", ' .. cjson.encode(out) .. ']'
"""
STORE_PAYLOAD = r"""
local size, blob = tonumber(ARGV[1]), ARGV[4]
local ids, revs, done = {}, {}, {}
for id in string.gmatch(ARGV[2], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[3], '[^\n]+') do revs[#revs + 1] = rev end
local cur = redis.call('HMGET', 'idx', unpack(ids))
for i, id in ipairs(ids) do
  if cur[i] and string.sub(cur[i], 1, #revs[i] + 1) == revs[i] .. ':' then
    redis.call('HSET', 'n:' .. id, 'emb', string.sub(blob, (i - 1) * size + 1, i * size))
    done[#done + 1] = id
  end
end
if #done > 0 then redis.call('HDEL', 'idx', unpack(done)) end
return #done
"""
# The same index, and each batch's vectors kept as one string with bulk references.
STORE_PAGES = r"""
local blob = ARGV[4]
local ids, revs, done, refs = {}, {}, {}, {}
for id in string.gmatch(ARGV[2], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[3], '[^\n]+') do revs[#revs + 1] = rev end
local cur = redis.call('HMGET', 'idx', unpack(ids))
local page = redis.call('HINCRBY', 'meta', 'page', 1)
for i, id in ipairs(ids) do
  if cur[i] and string.sub(cur[i], 1, #revs[i] + 1) == revs[i] .. ':' then
    done[#done + 1] = id
    refs[#refs + 1] = id
    refs[#refs + 1] = page .. ':' .. i
  end
end
if #done > 0 then
  redis.call('SET', 'page:' .. page, blob)
  redis.call('HSET', 'refs', unpack(refs))
  redis.call('HSET', 'live', page, #done)
  redis.call('HDEL', 'idx', unpack(done))
end
return #done
"""

LAYOUTS = [
    ("in use: id set, vector in the node hash", "set", FETCH_NODE, STORE_NODE),
    ("index scored by revision", "zset", FETCH_ZSET, STORE_ZSET),
    ("index carrying the content", "payload", FETCH_PAYLOAD, STORE_PAYLOAD),
    ("content index + one string per batch", "payload", FETCH_PAYLOAD, STORE_PAGES),
]


def seed(client: redis.Redis, index: str) -> None:
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for i in range(N):
        text = content(i)
        # Typed from the call's parameter (a dict of str and int would be dict[str, object]).
        fields: Mapping[FieldT, EncodableT] = {
            "kind": "fact",
            "rev": i + 1,
            "content": text,
            "subject": "topic",
            "tags": "[]",
        }
        pipe.hset(f"n:{i}", mapping=fields)
        if index == "set":
            pipe.sadd("idx", i)
        elif index == "zset":
            pipe.zadd("idx", {str(i): i + 1})
        else:
            pipe.hset("idx", str(i), f"{i + 1}:{text}")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def measure(client: redis.Redis, index: str, fetch_src: str, store_src: str) -> tuple[float, float]:
    seed(client, index)
    fetch, store = client.register_script(fetch_src), client.register_script(store_src)
    embedder = HashingEmbedder(DIMS)
    cursor, pages = "0", []
    cpu0 = redis_cpu(client)
    while True:
        nxt, page = json.loads(fetch(args=[cursor, BATCH]))
        pages.append(page)
        cursor = str(nxt)
        if cursor == "0":
            break
    fetched = redis_cpu(client) - cpu0
    blobs = [embedder.embed([row[1] for row in page]).astype("<f4").tobytes() for page in pages]
    cpu1, stored = redis_cpu(client), 0
    for page, blob in zip(pages, blobs, strict=True):
        ids, revs = "\n".join(r[0] for r in page), "\n".join(str(r[2]) for r in page)
        stored += int(store(args=[DIMS * 4, ids, revs, blob]))
    if stored != N:
        raise RuntimeError(f"stored {stored} of {N}")
    return fetched, redis_cpu(client) - cpu1


def main() -> int:
    texts = [content(i) for i in range(N)]
    embedder = HashingEmbedder(DIMS)
    t0 = time.perf_counter()
    for i in range(0, N, BATCH):
        embedder.embed(texts[i : i + BATCH])
    embed_s = time.perf_counter() - t0
    server = Server(Path(tempfile.mkdtemp(prefix="car-dream-layouts-")))
    rows: list[tuple[str, float, float]] = []
    try:
        client = redis.Redis(port=server.port)
        for name, index, fetch_src, store_src in LAYOUTS:
            runs = [measure(client, index, fetch_src, store_src) for _ in range(3)]
            f = statistics.median(r[0] for r in runs)
            s = statistics.median(r[1] for r in runs)
            rows.append((name, f, s))
    finally:
        server.stop()
    base = rows[0][1] + rows[0][2]
    print(f"{N:,} nodes, batches of {BATCH}; the default embedder alone: {embed_s:.3f} s")
    print("| layout | fetch (Redis CPU) | store (Redis CPU) | total | vs in use |")
    print("| --- | --- | --- | --- | --- |")
    for name, f, s in rows:
        print(f"| {name} | {f:.3f} s | {s:.3f} s | {f + s:.3f} s | {(f + s) / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
