"""`stagewatch serve`: the daemon plus a live-reloading preview of the site (docs/design.md#the-preview).

site       URL paths -> files of the site folder, safely; which folder is the site
rules      pure decisions of the HTTP layer: Host and Origin, ranges, caching, the script's place
tabs       open tabs, what each loaded, and what a settled round means for each
status     the status page's rows, from the daemon's view of its stages; when a failure is over
outbox     each tab's messages on their way, bounded: a tab that does not keep up is cut off
server     the aiohttp application on the daemon's loop: the listener, routes, Host check, stop
files      what a request for a file gets: never half-written (the wait, the last good bytes)
stream     files too large to keep in memory, sent from disk a part at a time
live       the tabs' WebSockets: who is followed, what each round and failure tells each
pages      stagewatch's own HTML: the script's tag, its own pages, folder listings
           (server, files, stream, live and pages import aiohttp; the others do not)
client.js  the script injected into HTML responses

Importing this package loads nothing: only `serve` (and `watch --serve`) pays for aiohttp.
"""
