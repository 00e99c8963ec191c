"""`sqs://` and `sqss://`: the Amazon SQS adapter (needs the `sqs` extra: boto3).

`sqs://[key:secret@]host:port?region=us-east-1` talks plain HTTP to an SQS-compatible
endpoint (moto's server, ElasticMQ, LocalStack); `sqss://host` talks HTTPS (AWS itself,
e.g. `sqss://sqs.eu-west-1.amazonaws.com?region=eu-west-1`). Without key and secret in
the URL, boto3's usual credential chain applies. Each stemlab queue is one SQS queue per
priority level plus one dead-letter queue, named with the namespace as prefix. Design
and limits: docs/sqs.md.
"""

from stemlab.brokers.sqs.broker import SQSBroker

__all__ = ["SQSBroker"]
