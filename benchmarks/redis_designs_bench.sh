#!/bin/sh
# Both Redis designs through `python -m stemlab.live.bench`, alternated ROUNDS times on one
# server and db (default redis://127.0.0.1:6379/12), so that a loaded machine hits both alike;
# one JSON line per run to stdout. Summarise with: python benchmarks/redis_designs_summary.py FILE
set -eu
BASE=${BASE:-127.0.0.1:6379/12}
ROUNDS=${ROUNDS:-3}
i=0
while [ "$i" -lt "$ROUNDS" ]; do
  for design in redis redis+streams; do
    python -m stemlab.live.bench "$design://$BASE" --json "$@"
  done
  i=$((i + 1))
done
