"""RQ task for the peer benchmark."""

import common


def noop(t_enq):
    common.record(t_enq)
