"""`stagewatch watch`: a pure coordinator decides, a shell on an asyncio loop carries it out.

coordinator  events in, actions out (no I/O, no clock); every move a slot makes, as tables
board        its private state: the slots and the indexes kept over them
loops        the self-trigger guard: a stage's own writes told from a person's
backoff      a failing stage's wait, and whether a stale stage that failed is held
events       the values it speaks in: the slot states, the facts events bring, the actions
plan         a pipeline as the coordinator sees it
shell        the loop and signals; the coordinator's actions carried out; the stop
timers       the shell's named timers on the loop
watching     watchdog's changes -> debounced batches; the watches updated on the I/O thread
reloading    one read of the pipeline file at a time, and its judgment acted on
runs         the coordinator's Check, Start and Cancel, on worker threads
workers      the worker threads, which hand their results back to the loop
changes      a debounced burst of filesystem changes -> what it means for the stages
reload       the pipeline file read again while watching, what changed, and what to do
impact       which stages a changed path affects, and which folders to watch
upkeep       the watches kept in step with the pipeline and its stages' imports
watcher      watchdog's observers -> changes; the only module importing watchdog
scheduler    the debounce: arithmetic on times
systemd      sd_notify
listener     what a companion on the loop hears (stages started and ended, rounds settled)
view         what a companion may read of the daemon: the pipeline, its stages' states, records

Importing this package loads nothing: `build` and `status` never pay for the daemon.
"""
