"""The distributed broker on NATS JetStream: `NatsBroker` (broker.py), chosen by
`open_broker("nats://host:port")`. Needs nats-py (`pip install squall[distributed]`).

Named `jetstream`, not `nats`, so that it never shadows the nats-py package."""

from __future__ import annotations

try:
    import nats  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from ..broker import BrokerError

    raise BrokerError("the NATS broker needs nats-py: pip install 'squall[distributed]' "
                      "(or pip install nats-py)") from exc

from .broker import NatsBroker

__all__ = ["NatsBroker"]
