"""The Redis side of `STORE=redis`: several instances serving one market through one Redis.

One module per job: `keys` (names, one hash slot), `connection` (clients with timeouts, the health
`/health` reports), `changelog` (the committed versions: a stream of change sets folded into a base
snapshot), `lease` (who is the ingest leader, with a fencing token), `budget` (each upstream's sliding
60 s window for the whole deployment), `shared` (cursor secret, the leader's cycle summary, the ingest's
per-token state). Nothing here is on a request's path: readers work on local `Version` objects.
"""
