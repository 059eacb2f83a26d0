"""PostgreSQL backends for distributed mode: the invocation log (store.py), the queue
broker (broker.py, with records.py and streams.py), the state store (state.py, with
tables.py and objects.py) and the cache (cache.py), on one database shared by every node.
"""
