#!/usr/bin/env bash
# Run every peer benchmark, stemlab's own rows and every raw-limit measurement REPS times (default 3), interleaved
# (rep 1 of everything, then rep 2, ...), then aggregate into results/summary.md.
# Each python invocation has its own 58 s internal deadline plus an outer `timeout 75`.
# Needs: redis-server on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672 (guest/guest; the *_amqp jobs), PostgreSQL on 127.0.0.1:5432 with a trusted role and a
# database `peers_bench` (see README.md), and the peers' venv at $PEERS_VENV (default benchmarks/.peers-venv).
# Env: REPS=3, ONLY=<regex over the job list>, SKIP_RAW=1 (skip raw limits), KEEP_RESULTS=1 (append),
# STEMLAB_BASE=<dir of an older stemlab checkout>: every stemlab job matching BASE_ONLY (a regex,
# default: all) runs a second time right after, with that checkout first on PYTHONPATH and its
# config recorded as "<config> base" (before/after in one interleaved run).
# CEILING=1: also run ceiling.py (server-bound claim+ack ceiling) after each one-process stemlab job.
set -u
cd "$(dirname "$0")"
VENV=${PEERS_VENV:-$PWD/.peers-venv}
PY=$VENV/bin/python
# stemlab's own rows run with a Python that has stemlab installed (default: python3 on the PATH now)
STEMLAB_PY=${STEMLAB_PY:-$(command -v python3)}
export STEMLAB_PY
REPS=${REPS:-3}
export PATH=$VENV/bin:$PATH

redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "redis not reachable on 127.0.0.1:6379"; exit 1; }
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "postgres not reachable on 127.0.0.1:5432"; exit 1; }
psql -h 127.0.0.1 -d postgres -Atc "select 1 from pg_database where datname='peers_bench'" | grep -q 1 \
  || psql -h 127.0.0.1 -d postgres -c "CREATE DATABASE peers_bench"

if [ -z "${KEEP_RESULTS:-}" ] && ls results/*.jsonl >/dev/null 2>&1; then
  d=results/archive/$(date +%Y%m%dT%H%M%S); mkdir -p "$d"; mv results/*.jsonl results/summary.md "$d"/ 2>/dev/null
  echo "previous results moved to $d"
fi
mkdir -p results

JOBS=(
  "bench_celery.py solo" "bench_celery.py prefork" "bench_celery.py threads"
  "bench_dramatiq.py p1t1" "bench_dramatiq.py default"
  "bench_rq.py worker" "bench_rq.py simple" "bench_rq.py pool2"
  "bench_huey.py redis default" "bench_huey.py redis p2"
  "bench_huey.py sqlite default" "bench_huey.py sqlite p2"
  "bench_huey.py postgres default" "bench_huey.py postgres p2"
  "bench_procrastinate.py c1" "bench_procrastinate.py c4" "bench_procrastinate.py c1-syncdefer"
  "bench_arq.py j1" "bench_arq.py default"
  "bench_saq.py redis c1" "bench_saq.py redis default"
  "bench_saq.py postgres c1" "bench_saq.py postgres default"
  "bench_inmemory.py dramatiq-stub-t1" "bench_inmemory.py dramatiq-stub" "bench_inmemory.py huey-memory"
  "bench_stemlab.py sqlite p1" "bench_stemlab.py sqlite p16"
  "bench_stemlab.py sqlite p1x2" "bench_stemlab.py sqlite p16x2"
  "bench_stemlab.py redis p1" "bench_stemlab.py redis p16" "bench_stemlab.py redis p16x2"
  "bench_stemlab.py redis p1x2"
  "bench_stemlab.py postgres p1" "bench_stemlab.py postgres p16" "bench_stemlab.py postgres p16x2"
  "bench_stemlab.py postgres p1x2"
  "bench_dramatiq_amqp.py p1t1" "bench_dramatiq_amqp.py p1" "bench_dramatiq_amqp.py default"
  "bench_celery_amqp.py solo" "bench_celery_amqp.py prefork" "bench_celery_amqp.py threads"
  "bench_stemlab.py amqp p1" "bench_stemlab.py amqp p16" "bench_stemlab.py amqp p16x2"
)

for rep in $(seq 1 "$REPS"); do
  export BENCH_REP=$rep
  echo "=== repetition $rep/$REPS  $(date +%T)"
  for job in "${JOBS[@]}"; do
    # ONLY=regex limits the peer jobs, e.g. ONLY='celery|huey'
    if [ -n "${ONLY:-}" ] && ! [[ $job =~ $ONLY ]]; then continue; fi
    py=$PY
    if [[ $job == bench_stemlab.py* ]]; then py=$STEMLAB_PY; fi
    # shellcheck disable=SC2086
    limit=75
    if [[ $job == "bench_stemlab.py amqp"* ]]; then limit=160; fi  # see SLOW in bench_stemlab.py
    timeout $limit "$py" $job || echo "FAILED ($?): $job"
    if [[ $job == bench_stemlab.py* ]] && [ -n "${STEMLAB_BASE:-}" ] && [[ $job =~ ${BASE_ONLY:-.} ]]; then
      # shellcheck disable=SC2086
      PYTHONPATH=$STEMLAB_BASE BENCH_STEMLAB_TAG=base timeout $limit "$py" $job || echo "FAILED ($?): base $job"
    fi
    if [[ $job == bench_stemlab.py* ]] && [ -n "${CEILING:-}" ] && [[ $job != *x2 ]] && [[ $job != *amqp* ]]; then
      # shellcheck disable=SC2086
      timeout 75 "$py" ceiling.py ${job#bench_stemlab.py } || echo "FAILED ($?): ceiling $job"
    fi
  done
  if [ -z "${SKIP_RAW:-}" ]; then
    timeout 90 ./raw_redis_benchmark.sh || echo "FAILED: raw_redis_benchmark.sh"
    for s in redis pg sqlite mem; do timeout 75 "$PY" raw_limits.py "$s" || echo "FAILED: raw_limits.py $s"; done
  fi
done
"$PY" aggregate.py > results/summary.md
echo "wrote results/summary.md  $(date +%T)"
