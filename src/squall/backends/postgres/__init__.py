"""PostgreSQL backends for distributed mode: the invocation log (store.py) and the queue
broker (broker.py, with records.py and streams.py), on one database shared by every node.
"""
