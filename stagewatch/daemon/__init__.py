"""`stagewatch watch`: a pure coordinator decides, a shell on an asyncio loop carries it out.

coordinator  one slot per stage; events in, actions out (no I/O, no clock)
shell        the loop, signals, timers and worker threads that carry the actions out
changes      a debounced burst of filesystem changes -> what it means for the stages
workers      worker threads that hand their results back to the loop
impact       which stages a changed path affects, and which folders to watch
watcher      watchdog's observers -> changes; the only module importing watchdog
scheduler    TTL due times, failure backoff and debounce: arithmetic on times
systemd      sd_notify

Importing this package loads nothing: `build` and `status` never pay for the daemon.
"""
