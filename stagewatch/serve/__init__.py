"""`stagewatch serve`: the daemon plus a live-reloading preview of the site (DESIGN §10).

settings   the [serve] table's value (no I/O; config.py builds it)
site       URL paths -> files of the site folder, safely; which folder is the site
rules      pure decisions of the HTTP layer: Host and Origin, ranges, caching, the script's place
tabs       open tabs, what each loaded, and what a settled round means for each
outbox     each tab's messages on their way, bounded: a tab that does not keep up is cut off
status     the status page's rows, from the daemon's view of its stages
server     the aiohttp application on the daemon's loop
stream     files too large to keep in memory, sent from disk a part at a time
           (server and stream are the only modules importing aiohttp)
client.js  the script injected into HTML responses

Importing this package loads nothing: only `serve` (and `watch --serve`) pays for aiohttp.
"""
