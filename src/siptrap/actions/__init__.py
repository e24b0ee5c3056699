"""Responses to alerts: the progressive policy ladder and the actions that enforce it.

`ActionSink` is a bus sink: it reads `analysis.alert.raised` (and the requests that show an
attack goes on), moves each source along the `[policy] ladder` (try_later -> forbid ->
firewall), and hands each change to the configured `[[actions]]` (kamailio, nftables,
blocklist, webhook, program), each in its own worker thread, off the network path.
"""
