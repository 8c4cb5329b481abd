"""One writer process of chaos scenario 3: ingests facts, supersedes them, writes
conclusions, writes facts other writers write too (in another case or spacing: exact
duplicates for the merge step, some cited by a conclusion) and keeps environment nodes
alive by refreshing them before they expire.
Every operation is logged as one JSON line, with the times around the call."""

from __future__ import annotations

import json
import random
import sys
import time

import redis

from car_dream.store import MemoryStore

LIFE = 4.0  # an environment node lives this long after each refresh
REFRESH_BEFORE = 2.0  # refreshed when this close to its expiry
SHARED = [f"Shared note {k}: the build server is in rack {k}." for k in range(8)]


def main(url: str, namespace: str, writer: str, duration: float, log_path: str) -> None:
    store = MemoryStore(redis.Redis.from_url(url), namespace)
    rng = random.Random(writer)
    out = open(log_path, "w", buffering=1)  # noqa: SIM115

    def log(**row: object) -> None:
        out.write(json.dumps(row) + "\n")

    live = [f"{writer}.env.{j}" for j in range(10)]
    expiry: dict[str, float] = {}
    head: str | None = None
    n = 0
    end = time.time() + duration
    while time.time() < end:
        for eid in list(live):
            prev = expiry.get(eid)
            if prev is None or time.time() >= prev - REFRESH_BEFORE:
                t0 = time.time()
                created = store.ingest_environment(
                    eid, f"observation {n} of {eid}", observed_at=t0, expires_at=t0 + LIFE
                )
                t1 = time.time()
                log(op="env", id=eid, t0=t0, t1=t1, prev=prev, exp=t0 + LIFE, created=created)
                expiry[eid] = t0 + LIFE
        if rng.random() < 0.03:  # let one expire for real, start another
            gone = live.pop(rng.randrange(len(live)))
            log(op="abandon", id=gone, exp=expiry[gone])
            live.append(f"{writer}.env.{10 + n}")
        fid = f"{writer}.f.{n}"
        if head is not None and rng.random() < 0.5:
            store.ingest_fact(fid, "chaos", f"fact {n} replaces {head}", supersedes=head)
            log(op="supersede", id=fid, old=head)
        else:
            store.ingest_fact(fid, "chaos", f"fact {n} of {writer}")
            log(op="fact", id=fid)
        if rng.random() < 0.2:
            cid = f"{writer}.c.{n}"
            store.ingest_conclusion(cid, f"derived from {fid}", premises=[fid])
            log(op="conclusion", id=cid, premise=fid)
        if rng.random() < 0.15:  # a duplicate of another writer's (or its own) fact
            sid, text = f"{writer}.s.{n}", SHARED[rng.randrange(len(SHARED))]
            text = rng.choice((text, text.upper(), text.lower(), "  " + text.replace(" ", "  ")))
            store.ingest_fact(sid, "shared", text)
            log(op="shared", id=sid)
            if rng.random() < 0.5:
                cid, t0 = f"{writer}.sc.{n}", time.time()
                store.ingest_conclusion(cid, f"derived from {sid}", premises=[sid])
                log(op="conclusion", id=cid, premise=sid, t0=t0)
        head = fid
        n += 1
        time.sleep(0.02)
    # A node started in the last round may not have been written yet: not kept alive.
    kept = {e: expiry[e] for e in live if e in expiry}
    log(op="end", live=list(kept), expiry=kept, t=time.time())
    out.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
