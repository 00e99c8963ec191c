"""Dramatiq app for the peer benchmark (RedisBroker, default middleware, no results backend)."""

import common
import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=common.REDIS_URL)
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(t_enq):
    common.record(t_enq)
