"""Dramatiq app for the peer benchmark on RabbitMQ (RabbitmqBroker, default middleware)."""

import common
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(url=common.AMQP_URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench_dramatiq")
def noop(t_enq):
    common.record(t_enq)
